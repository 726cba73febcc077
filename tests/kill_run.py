"""Run ``sj-ext train`` and SIGKILL the process at a chosen checkpoint write.

    python tests/kill_run.py after|during N -- <sj-ext train arguments>

``after N``: right after the N-th ``latest.pt`` is in place. ``during N``: in the
middle of writing the N-th ``latest.pt`` (half its bytes on disk, not renamed yet).
A real ``kill -9``: no handler, no clean-up runs.
"""

import io
import os
import signal
import sys

import torch

from sj_ext import cli
from sj_ext.engine import trainer

mode, count = sys.argv[1], int(sys.argv[2])
args = sys.argv[sys.argv.index("--") + 1 :]
calls = 0
real_save_checkpoint = trainer.save_checkpoint
real_torch_save = torch.save


def kill():
    os.kill(os.getpid(), signal.SIGKILL)


def save_checkpoint(path, state):
    global calls
    if path.name == "latest.pt":
        calls += 1
    if mode == "during" and calls == count and path.name == "latest.pt":

        def half_save(obj, f):
            buf = io.BytesIO()
            real_torch_save(obj, buf)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            os.fsync(f.fileno())
            kill()

        torch.save = half_save
    real_save_checkpoint(path, state)
    if mode == "after" and calls == count and path.name == "latest.pt":
        kill()


trainer.save_checkpoint = save_checkpoint
sys.exit(cli.main(["train", *args]))
