"""Training engine: recipe -> trained, checkpointed, resumable run (the loop: :mod:`.trainer`)."""

from .build import build_run
from .errors import Preempted, TrainingError
from .evaluate import evaluate_checkpoint
from .runfolder import RecipeMismatch
from .trainer import train

__all__ = [
    "Preempted",
    "RecipeMismatch",
    "TrainingError",
    "build_run",
    "evaluate_checkpoint",
    "train",
]
