"""Run ``sj-ext train`` under torchrun; rank 1 SIGKILLs itself once, before evaluating epoch E.

    torchrun ... tests/helpers/kill_rank.py MARKER E -- <sj-ext arguments>

The first incarnation of rank 1 creates MARKER and dies (a real ``kill -9``);
after torchrun's restart MARKER exists and every rank runs to the end.
"""

import os
import signal
import sys
from pathlib import Path

from nth_call import before_nth_call  # this folder: sys.path[0]

from sj_ext.app import cli
from sj_ext.app.engine import trainer

marker, epoch = Path(sys.argv[1]), int(sys.argv[2])
args = sys.argv[sys.argv.index("--") + 1 :]


def die():
    marker.touch()
    os.kill(os.getpid(), signal.SIGKILL)


if os.environ["RANK"] == "1" and not marker.exists():
    before_nth_call(trainer, "evaluate", epoch, die)
sys.exit(cli.main(args))
