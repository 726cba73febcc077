"""Preemption: SIGTERM (SLURM, Kubernetes, torchrun) and Ctrl-C while training."""

import os
import signal
import threading

__all__ = ["StopSignals"]


class StopSignals:
    """Catch SIGTERM and SIGINT for the duration of a ``with`` block (main thread only).

    The first signal is only recorded (:attr:`signum`): the trainer stops at its next
    training step and the run folder keeps the last completed epoch. A second
    signal raises :class:`KeyboardInterrupt` at once. The previous handlers come
    back on leaving the block.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, announce: bool = True):
        self.signum: int | None = None
        self.announce = announce
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.signum is not None:
            stop = KeyboardInterrupt(f"a second signal ({name}): stopped at once")
            stop.signum = signum
            raise stop
        self.signum = signum
        if self.announce:  # os.write: print() is not safe inside a signal handler
            os.write(2, f"sj-ext: {name}: stopping at the next step (again: at once)\n".encode())
