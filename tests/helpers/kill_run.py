"""Run ``sj-ext train`` and SIGKILL the process at a chosen checkpoint write.

    python tests/helpers/kill_run.py after|during N [NAME] -- <sj-ext train arguments>

``after N``: right after the N-th ``NAME`` (default ``latest.pt``) is in place.
``during N``: in the middle of writing the N-th ``NAME`` (half its bytes in the
temporary file, not renamed yet). A real ``kill -9``: no handler, no clean-up runs.
"""

import builtins
import os
import signal
import sys

from sj_ext.app import cli, runfiles
from sj_ext.app.engine import runfolder

mode, count = sys.argv[1], int(sys.argv[2])
split = sys.argv.index("--")
name = sys.argv[3] if split > 3 else "latest.pt"
args = sys.argv[split + 1 :]
calls = 0
real_save_checkpoint = runfolder.save_checkpoint


def kill():
    os.kill(os.getpid(), signal.SIGKILL)


class HalfFile:
    """A file that writes half of what it is given, syncs it, and dies."""

    def __init__(self, path):
        self.f = builtins.open(path, "wb")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        os.fsync(self.f.fileno())
        kill()


def half_open(path, mode="r", *a, **k):
    if os.path.basename(path).startswith(f".{name}.tmp."):
        return HalfFile(path)
    return builtins.open(path, mode, *a, **k)


def save_checkpoint(path, state, **kwargs):
    global calls
    calls += path.name == name
    if mode == "during" and calls == count and path.name == name:
        runfiles.open = half_open  # shadows open() inside runfiles.write_temp
    real_save_checkpoint(path, state, **kwargs)
    if mode == "after" and calls == count and path.name == name:
        kill()


runfolder.save_checkpoint = save_checkpoint
sys.exit(cli.main(["train", *args]))
