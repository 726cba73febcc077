"""What an epoch leaves: its record in ``metrics.json``, its TensorBoard scalars, and the
checkpoint a resume needs."""

from ..runfiles import best_accuracy
from .build import Run
from .checkpoint import rng_state

__all__ = ["ACCURACIES", "metrics", "write_scalars", "checkpoint_state"]

#: the accuracies an epoch record may hold, in the order the log and TensorBoard give them
ACCURACIES = ("train_acc", "val_acc", "test_acc")


def metrics(records: list[dict], split: str) -> dict:
    """``metrics.json``: the records; the best accuracy on ``split`` (the other best is null:
    with a validation split the test set has no best, being read once); the last epoch's
    test accuracy (null until a validation run's last epoch) and accuracy per class."""
    last = records[-1] if records else {}
    best = best_accuracy(records, split)
    return {
        "epochs": records,
        "best_test_acc": best if split == "test" else None,
        "best_val_acc": best if split == "val" else None,
        "final_test_acc": last.get("test_acc"),
        "final_per_class_acc": last.get("per_class_acc"),
    }


def write_scalars(writer, row: dict) -> None:
    """The epoch's losses, accuracies and rate in TensorBoard (the main process only)."""
    if writer is None:
        return
    for key in ("train_loss", *ACCURACIES, "lr"):
        if key in row:
            writer.add_scalar(key, row[key], row["epoch"])
    writer.flush()


def checkpoint_state(run: Run, scaler, recipe: dict, records: list[dict], info) -> dict:
    """Everything a resume needs, after the epoch ``records[-1]``."""
    return {
        "model": run.model.state_dict(),
        "loss": run.loss.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": records[-1]["epoch"],
        "epochs": records,
        "recipe": recipe,
        "rng": rng_state(),
        "world_size": info.world_size,
    }
