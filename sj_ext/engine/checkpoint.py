"""Verified checkpoints (everything needed to resume exactly).

Every checkpoint ``NAME.pt`` has a sidecar ``NAME.pt.sha256`` in ``sha256sum``
format (``sha256sum -c latest.pt.sha256`` checks it by hand) listing the
SHA-256 digests the file may have. A write lists the old and the new digest
while the file is being replaced and the new one alone afterwards, so a crash
at any moment leaves a file its sidecar accepts; a damaged file (truncated,
garbage, changed bytes inside a tensor) fails :func:`load_checkpoint`. Files are
written through :mod:`sj_ext.runfiles` (``atomic_write`` and ``write_json`` are
re-exported here).
"""

import hashlib
import io
import random
from pathlib import Path

import numpy as np
import torch

from ..runfiles import atomic_write, replace, write_json, write_temp

__all__ = [
    "CheckpointError",
    "atomic_write",
    "write_json",
    "save_checkpoint",
    "load_checkpoint",
    "rotate",
    "rng_state",
    "set_rng_state",
]


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or fails its checksum."""


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_digests(path: Path) -> set[str]:
    """The digests ``path``'s sidecar accepts (empty when there is no sidecar)."""
    sidecar = _sidecar(path)
    if not sidecar.is_file():
        return set()
    return {line.split()[0] for line in sidecar.read_text().splitlines() if line.strip()}


def _write_digests(path: Path, digests: set[str]) -> None:
    text = "".join(f"{d}  {path.name}\n" for d in sorted(digests))
    atomic_write(_sidecar(path), lambda f: f.write(text.encode()))


def save_checkpoint(path: Path, state: dict, keep: Path | None = None) -> None:
    """``torch.save(state)`` to ``path`` atomically, with its SHA-256 in ``path.sha256``.

    ``keep``: first move the current ``path`` there (see :func:`rotate`), once the new
    file is safely on disk -- a failed write (disk full) changes nothing.
    """
    path = Path(path)
    buf = io.BytesIO()
    torch.save(state, buf)  # serialised in memory: a full disk fails in the write, cleanly
    digest = hashlib.sha256(buf.getbuffer()).hexdigest()
    tmp = write_temp(path, lambda f: f.write(buf.getbuffer()))
    try:
        if keep is not None and path.is_file():
            rotate(path, keep)
        _write_digests(path, _read_digests(path) | {digest})
        replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _write_digests(path, {digest})


def rotate(path: Path, to: Path) -> None:
    """Move checkpoint ``path`` (and its digests) to ``to``, valid at every step."""
    digests = _read_digests(path)
    _write_digests(to, _read_digests(to) | digests)
    replace(path, to)
    _write_digests(to, digests)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint, verifying its sidecar digest when it has one.

    :raises CheckpointError: no file, a digest mismatch, or a file torch cannot read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    data = path.read_bytes()
    digests = _read_digests(path)
    if digests and hashlib.sha256(data).hexdigest() not in digests:
        raise CheckpointError(
            f"checkpoint {path} is damaged: its SHA-256 does not match {_sidecar(path).name}"
        )
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
