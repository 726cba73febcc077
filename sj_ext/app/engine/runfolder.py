"""One run folder, one writer: its lock, checkpoint rotation, resume and consistency.

Checkpoints (``OUT/checkpoints``, each with a ``.sha256`` sidecar, see :mod:`.checkpoint`)::

    latest.pt     the last completed epoch
    previous.pt   the epoch before (resume falls back to it when latest.pt is damaged)
    best.pt       the epoch with the best accuracy so far on the split every epoch
                  evaluates (the validation split when the run has one, else the test set)

Every epoch end writes the new ``latest.pt`` to a temporary file, then moves
``latest.pt`` to ``previous.pt`` and the new file to ``latest.pt``, then writes
``best.pt`` (when the epoch improved), then ``metrics.json``. A kill between any
two steps leaves a valid ``latest.pt`` or ``previous.pt`` (a full disk leaves
everything as it was), and :meth:`RunFolder.reconcile` repairs ``best.pt`` and
``metrics.json`` on resume. A resume that falls back from a damaged ``latest.pt``
moves every damaged checkpoint it met aside (``latest.pt.damaged``, with its
sidecar), so the next save writes a good ``latest.pt`` in its place.
"""

import errno
import fcntl
import json
import os
import socket
from pathlib import Path

from ..recipe import RESUMABLE_CHANGES, RecipeError, flatten, schema_defaults
from ..runfiles import EVAL_KEYS, best_accuracy, write_json
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, set_aside
from .errors import TrainingError

__all__ = ["RecipeMismatch", "RunLock", "RunFolder", "refuse_incompatible", "refuse_fewer_epochs"]


class RecipeMismatch(RecipeError):
    """The recipe does not fit the run or checkpoint it is given (a bad recipe: exit 2)."""


def refuse_fewer_epochs(state: dict, recipe: dict, path: Path) -> None:
    """Refuse a resume whose ``train.epochs`` is below the epochs ``state`` has done."""
    epochs, done = recipe["train"]["epochs"], state["epoch"]
    if epochs < done:
        raise RecipeMismatch(
            str(path),
            [
                f"train.epochs: {epochs} is below the {done} epochs this run has already "
                f"done; set train.epochs to {done} or more to continue it"
            ],
        )


def refuse_incompatible(saved: dict, recipe: dict, path: Path) -> None:
    """Refuse a resume whose recipe changed in a key outside ``RESUMABLE_CHANGES``.

    A key the saved recipe lacks (a run from before the key existed) counts as
    its schema default.
    """
    new = flatten(recipe)
    defaults = {k: v for k, v in schema_defaults().items() if k in new}
    old = {**defaults, **flatten(saved)}
    differing = sorted(
        k
        for k in old.keys() | new.keys()
        if old.get(k, "<absent>") != new.get(k, "<absent>") and k not in RESUMABLE_CHANGES
    )
    if differing:
        details = "; ".join(
            f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}" for k in differing
        )
        raise TrainingError(
            f"cannot resume {path}: the recipe changed incompatibly ({details}). "
            f"Only {', '.join(RESUMABLE_CHANGES)} may change on --resume."
        )


class RunLock:
    """``OUT/.lock``: an exclusive ``flock`` that holds the writer's host and PID.

    The kernel drops the lock when its process dies (``kill -9`` included), so a
    lock file left behind is stale and taken over. A file system without
    ``flock`` gets a warning and no lock.
    """

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / ".lock"
        self.fd = None

    @staticmethod
    def _holder(fd: int) -> str | None:
        try:
            who = json.loads(os.pread(fd, 4096, 0))
            return f"PID {who['pid']} on {who['host']}"
        except (ValueError, KeyError, TypeError):
            return None

    def _is_current(self, fd: int) -> bool:
        """``fd`` is still the file at :attr:`path` (not one a releasing holder unlinked)."""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        opened = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)

    def acquire(self, log) -> None:
        while True:  # (re)creating the folder: a holder that wrote nothing removes it
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder(fd) or "another process"
                os.close(fd)
                raise TrainingError(
                    f"{self.path.parent} is in use by {holder} (lock {self.path}): one run "
                    "folder takes one writer; wait for that run to end or choose another --out"
                ) from None
            except OSError as e:
                os.close(fd)
                log(f"warning: cannot lock {self.path} ({e.strerror}); a second writer goes unseen")
                return
            if self._is_current(fd):
                break
            os.close(fd)  # the holder removed the file after we opened it: lock the new one
        stale = self._holder(fd)
        if stale:
            log(f"took over the stale lock of {stale} (no longer running)")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


class RunFolder:
    """The checkpoints and metrics of one run; only the ``writer`` (rank 0) writes.

    Use as a context manager: entering takes the lock (creating the folder) and removes
    the temporary files a killed writer left; leaving releases the lock, and removes the
    folders entering created if the run left them empty (a refused ``--resume``, a run
    that failed before writing anything).
    """

    def __init__(self, out_dir: str | Path, writer: bool, log):
        self.out = Path(out_dir)
        self.ckpt = self.out / "checkpoints"
        self.latest, self.previous, self.best = (
            self.ckpt / f"{name}.pt" for name in ("latest", "previous", "best")
        )
        self.metrics = self.out / "metrics.json"
        self.writer, self.log = writer, log
        self.lock = RunLock(self.out)
        self.good: tuple[Path, int] | None = None  # the newest valid checkpoint, its epoch
        self._latest_ok = False  # latest.pt is valid (may become previous.pt)
        self._created: list[Path] = []  # the folders entering created, deepest first

    def __enter__(self):
        if self.writer:
            self._created = [p for p in (self.out, *self.out.parents) if not p.exists()]
            self.lock.acquire(self.log)
            for tmp in self.out.rglob(".*.tmp.*"):
                tmp.unlink()
                self.log(f"removed {tmp}, left by a killed run")
        return self

    def __exit__(self, *exc):
        self.lock.release()
        for folder in self._created:
            if any(folder.iterdir()):
                break
            folder.rmdir()

    def has_checkpoint(self) -> bool:
        return self.latest.is_file() or self.previous.is_file()

    def wants_resume(self, resume: bool | str) -> bool:
        """``resume`` (True, False or ``"auto"``) checked against what the folder holds."""
        if resume == "auto":
            return self.has_checkpoint()
        if resume and self.out in self._created:
            raise TrainingError(
                f"--resume: there is no run folder {self.out}: nothing to resume. Start the "
                "run without --resume (the same command), or name an existing run with --out"
            )
        if resume and not self.has_checkpoint():
            raise TrainingError(f"--resume: no checkpoint in {self.ckpt}")
        if not resume and self.has_checkpoint():
            raise TrainingError(
                f"{self.out} already holds a run ({self.ckpt}); pass --resume to continue it "
                "or choose another --out"
            )
        return bool(resume)

    def last_good(self) -> str:
        return f"{self.good[0]} (epoch {self.good[1]})" if self.good else "none yet"

    def load(self, recipe: dict) -> dict:
        """The newest valid checkpoint (``latest.pt``, else the newer of previous and best).

        Once the resume is accepted, the damaged checkpoints met on the way are moved aside.

        :raises TrainingError: none is valid, or ``recipe`` changed incompatibly.
        :raises RecipeMismatch: ``train.epochs`` is below the epochs done.
        """
        failed: dict[Path, str] = {}  # checkpoint -> why it did not load
        state, path = self._try(self.latest, failed), self.latest
        self._latest_ok = state is not None
        if state is None:
            found = [(s, p) for p in (self.previous, self.best) if (s := self._try(p, failed))]
            if not found:
                raise TrainingError(
                    f"no valid checkpoint left in {self.ckpt} ({'; '.join(failed.values())}): "
                    f"nothing to resume. Start again with another --out, or delete {self.ckpt} "
                    "to start over in this folder"
                )
            state, path = max(found, key=lambda f: f[0]["epoch"])
            epoch = state["epoch"]
            self.log(f"{failed[self.latest]}; resuming from {path} (epoch {epoch}) instead")
        refuse_incompatible(state["recipe"], recipe, path)
        refuse_fewer_epochs(state, recipe, path)
        self.good = (path, state["epoch"])
        if self.writer:
            for damaged in (p for p in failed if p.is_file()):
                self.log(f"moved the damaged {damaged.name} aside to {set_aside(damaged)}")
        return state

    @staticmethod
    def _try(path: Path, failed: dict) -> dict | None:
        """The checkpoint at ``path``, or None, recording why in ``failed[path]``."""
        try:
            return load_checkpoint(path)
        except CheckpointError as e:
            failed[path] = str(e)
            return None

    def reconcile(self, state: dict, metrics: dict, split: str) -> None:
        """On resume: ``metrics.json`` from the resumed records; ``best.pt`` at their best epoch
        (the best accuracy on ``split``, the split every epoch evaluates).

        ``best.pt`` is rewritten from ``state`` when ``state`` is the best epoch (a kill
        between the ``latest.pt`` and ``best.pt`` writes).
        """
        if not self.writer or not state["epochs"]:
            return
        self._guarded(state["epoch"], lambda: write_json(self.metrics, metrics))
        best = best_accuracy(state["epochs"], split)
        best_epoch = next(r["epoch"] for r in state["epochs"] if r[EVAL_KEYS[split][0]] == best)
        held = self._try(self.best, {})
        if held is not None and held["epoch"] == best_epoch:
            return
        held = f"epoch {held['epoch']}" if held else "no valid checkpoint"
        if best_epoch == state["epoch"]:
            self._guarded(best_epoch, lambda: save_checkpoint(self.best, state))
            self.log(f"rewrote {self.best} from epoch {best_epoch} (it held {held})")
        else:
            self.log(
                f"warning: {self.best} holds {held} but the records' best is epoch "
                f"{best_epoch}; it is replaced when the run next improves"
            )

    def save(self, state: dict, improved: bool, metrics: dict) -> None:
        """Epoch end: rotate, write ``latest.pt``, ``best.pt`` (if ``improved``), metrics."""
        if self.writer:
            self._guarded(state["epoch"], lambda: self._save(state, improved, metrics))

    def _save(self, state: dict, improved: bool, metrics: dict) -> None:
        save_checkpoint(self.latest, state, keep=self.previous if self._latest_ok else None)
        self.good, self._latest_ok = (self.latest, state["epoch"]), True
        if improved:
            save_checkpoint(self.best, state)
        write_json(self.metrics, metrics)

    def _guarded(self, epoch: int, write) -> None:
        """Run ``write``; a failed write (disk full) becomes a :class:`TrainingError`."""
        try:
            write()
        except OSError as e:
            cause = (
                "is full (no space left on device)"
                if e.errno == errno.ENOSPC
                else f"refused the write ({e})"
            )
            raise TrainingError(
                f"cannot save epoch {epoch}: the file system holding {self.out} {cause}. "
                f"Last good checkpoint: {self.last_good()}; make room, then continue with "
                "--resume"
            ) from e
