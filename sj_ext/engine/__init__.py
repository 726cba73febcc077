"""Training engine: recipe -> trained, checkpointed, resumable run (see :mod:`.trainer`)."""

from .trainer import TrainingError, build_run, evaluate_checkpoint, train

__all__ = ["TrainingError", "build_run", "evaluate_checkpoint", "train"]
