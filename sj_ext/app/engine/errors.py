"""Why a run stops (the CLI turns these into exit status 1, or 128 + signal number)."""

__all__ = ["TrainingError", "Preempted"]


class TrainingError(RuntimeError):
    """A run cannot go on (non-finite loss or state, incompatible resume, full disk, ...)."""


class Preempted(TrainingError):
    """SIGTERM or SIGINT stopped the run; the run folder resumes exactly (``--resume``)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
