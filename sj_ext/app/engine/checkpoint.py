"""Verified checkpoints (everything needed to resume exactly).

Every checkpoint ``NAME.pt`` has a sidecar ``NAME.pt.sha256`` in ``sha256sum``
format (``sha256sum -c latest.pt.sha256`` checks it by hand) listing the
SHA-256 digests the file may have. A write lists the old and the new digest
while the file is being replaced and the new one alone afterwards, so a crash
at any moment leaves a file its sidecar accepts; a damaged file (truncated,
garbage, changed bytes inside a tensor) fails :func:`load_checkpoint`. Files are
written through :mod:`sj_ext.app.runfiles` (``atomic_write`` and ``write_json`` are
re-exported here).

A checkpoint holds tensors and plain Python data only (numpy's random state is
kept as a list), and is read with ``torch.load(weights_only=True)``: a file
whose pickle names any other Python object -- a planted ``__reduce__`` payload,
or a checkpoint written by an older sj-ext, which kept numpy's random state as
an array -- is refused before anything in it runs, sidecar or not.
"""

import hashlib
import io
import pickle
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
    "set_aside",
    "rng_state",
    "set_rng_state",
]


#: what every checkpoint holds (besides the optimizer's, the scaler's, ... states a resume needs)
ENTRIES = ("model", "epoch", "recipe")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or fails its checksum."""


def rng_state() -> dict:
    """Python's, numpy's, torch's (and CUDA's) random states, as tensors and plain data."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, key.tolist(), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    kind, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(key, dtype=np.uint32), pos, has_gauss, gauss))
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
    """``path``'s sidecar listing ``digests``; none when there are none."""
    if not digests:
        _sidecar(path).unlink(missing_ok=True)
        return
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


def set_aside(path: Path) -> Path:
    """Move a damaged checkpoint and its sidecar to ``NAME.pt.damaged`` (and ``.sha256``),
    out of the way of the next save; return the new path."""
    to = path.with_name(path.name + ".damaged")
    rotate(path, to)
    _sidecar(path).unlink(missing_ok=True)
    return to


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint (tensors and plain data only), verifying its sidecar digest when it
    has one.

    :raises CheckpointError: no file, a digest mismatch, a file torch cannot read, or one
        that holds other Python objects (refused unread: they could run code).
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
        state = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused it, or a broken pickle
        raise CheckpointError(_refusal(path, data) or f"cannot read checkpoint {path}: {e}") from e
    except Exception as e:  # a truncated or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from e
    missing = [key for key in ENTRIES if not isinstance(state, dict) or key not in state]
    if missing:
        raise CheckpointError(
            f"{path} is not an sj-ext checkpoint: it has no {', '.join(map(repr, missing))}"
        )
    return state


def _refusal(path: Path, data: bytes) -> str | None:
    """Why ``path`` is refused, naming the Python objects its pickle holds (None: it holds
    none, so it is merely unreadable). The pickle is scanned, never run."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
    except Exception:  # not a torch.save file: nothing to name
        return None
    if not names:
        return None
    why = (
        f"checkpoint {path} is refused: besides tensors and plain data it holds Python "
        f"objects ({', '.join(sorted(names))}), and loading them could run any code. "
    )
    if all(name.startswith("numpy.") for name in names):
        return why + (
            "An older sj-ext kept numpy's random state this way: continue that run with "
            "the sj-ext that wrote it, or start it again"
        )
    return why + "sj-ext never writes such objects: the file was made elsewhere or tampered with"
