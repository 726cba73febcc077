"""Where a run ran: ``OUT/environment.json``, written at start and checked at resume.

Results of SNN papers move with the library versions (SpikingJelly's above all), so
every run folder records what produced it: the versions of Python, torch,
SpikingJelly and sj_ext, sj_ext's git commit (and whether the tree had changes),
CUDA and CuPy, the device (GPU name, or the CPU model), torch's thread count, the
determinism flags and the command line. A resume under other versions, another
commit or another device warns once, naming each change, and appends the new
environment to the file's ``resumed`` list; the first one stays on top.
"""

import importlib.metadata
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

from ... import __version__
from ..runfiles import ENVIRONMENT_KEYS, write_json

__all__ = ["environment", "changes", "record_environment"]


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cupy() -> str | None:
    """The installed CuPy wheel's version (``cupy-cuda13x`` and kin), without importing it."""
    for name in ("cupy", "cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x"):
        version = _version(name)
        if version is not None:
            return version
    return None


def _git(*args: str) -> str | None:
    """``git args`` run in sj_ext's source folder; None outside a checkout or without git."""
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {_cpu_model()}"


def environment(device: torch.device) -> dict:
    """The environment of a run on ``device`` (see the module docstring)."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "spikingjelly": _version("spikingjelly"),
        "sj_ext": __version__,
        "commit": commit,
        "dirty": None if status is None else bool(status),
        "cuda": torch.version.cuda,
        "cupy": _cupy(),
        "device": _device(device),
        "threads": torch.get_num_threads(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "platform": platform.platform(),
        "command": sys.argv,
    }


def changes(before: dict, now: dict) -> list[str]:
    """``'field old -> new'`` for every field of ``ENVIRONMENT_KEYS`` that differs."""
    return [
        f"{key} {before.get(key)} -> {now.get(key)}"
        for key in ENVIRONMENT_KEYS
        if before.get(key) != now.get(key)
    ]


def record_environment(path: Path, device: torch.device, resumed: bool, log) -> dict:
    """Write ``path`` at a start; at a resume, warn of the changes and append the new one.

    Returns this process's environment.
    """
    now = environment(device)
    if not resumed or not path.is_file():
        write_json(path, {**now, "resumed": []})
        return now
    saved = json.loads(path.read_text())
    changed = changes(saved["resumed"][-1] if saved.get("resumed") else saved, now)
    if changed:
        log(f"warning: resuming under another environment: {', '.join(changed)}")
    write_json(path, {**saved, "resumed": [*saved.get("resumed", []), now]})
    return now
