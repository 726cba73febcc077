"""Run ``sj-ext train`` and send this very process real signals at its N-th training step.

    python tests/helpers/signal_run.py SIGNAL COUNT N -- <sj-ext train arguments>

Just before the loss of the N-th training step (counted over the whole run), send
SIGNAL (``SIGTERM`` or ``SIGINT``) COUNT times: the handlers sj_ext installs are
the ones that run, as for a SLURM preemption or Ctrl-C.
"""

import os
import signal
import sys

from nth_call import before_nth_call  # this folder: sys.path[0]

from sj_ext.app import cli
from sj_ext.app.engine import trainer

signum, count, step = signal.Signals[sys.argv[1]], int(sys.argv[2]), int(sys.argv[3])
args = sys.argv[sys.argv.index("--") + 1 :]


def send():
    for _ in range(count):
        os.kill(os.getpid(), signum)


before_nth_call(trainer, "checked_loss", step, send)
sys.exit(cli.main(["train", *args]))
