"""Training engine: recipe -> trained, checkpointed, resumable run (see :mod:`.trainer`)."""

from .errors import Preempted, TrainingError
from .runfolder import RecipeMismatch
from .trainer import build_run, evaluate_checkpoint, train

__all__ = [
    "Preempted",
    "RecipeMismatch",
    "TrainingError",
    "build_run",
    "evaluate_checkpoint",
    "train",
]
