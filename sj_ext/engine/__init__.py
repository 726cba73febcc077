"""Training engine: recipe -> trained, checkpointed, resumable run (see :mod:`.trainer`)."""

from .errors import Preempted, TrainingError
from .trainer import build_run, evaluate_checkpoint, train

__all__ = ["Preempted", "TrainingError", "build_run", "evaluate_checkpoint", "train"]
