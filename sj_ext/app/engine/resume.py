"""Resuming a run: the newest valid checkpoint back into the run, and what a resume
under another process count or ``train.epochs`` changes, in words."""

import math

from .build import Run
from .checkpoint import set_rng_state
from .evaluate import eval_split
from .records import metrics
from .runfolder import RunFolder

__all__ = ["restore", "resume_changes", "steps_per_epoch"]


def restore(run: Run, scaler, folder: RunFolder, recipe: dict) -> dict:
    """Load the newest valid checkpoint into ``run`` and the RNGs; return it."""
    state = folder.load(recipe)
    run.model.load_state_dict(state["model"])
    run.loss.load_state_dict(state["loss"])
    run.optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    split = eval_split(run.data)
    folder.reconcile(state, metrics(state["epochs"], split), split)
    return state


def steps_per_epoch(n_train: int, batch_size: int, world_size: int, limit: int | None) -> int:
    """Optimizer steps in an epoch of ``n_train`` samples over ``world_size`` processes.

    ``DistributedSampler`` gives each process ``ceil(n_train / world_size)`` samples
    (padding the last), batched without dropping the last; ``limit`` caps the batches.
    """
    steps = math.ceil(math.ceil(n_train / world_size) / batch_size)
    return steps if limit is None else min(limit, steps)


def resume_changes(state: dict, recipe: dict, n_train: int, info) -> list[str]:
    """What resuming ``state`` under ``recipe`` and ``info`` changes in the training, in
    words: another process count (the effective batch size, the steps per epoch), another
    ``train.epochs`` (the learning-rate schedule)."""
    changes = []
    before, now = state.get("world_size", info.world_size), info.world_size
    if before != now:
        batch, limit = recipe["data"]["batch_size"], recipe["train"]["limit_train_batches"]
        old, new = (steps_per_epoch(n_train, batch, w, limit) for w in (before, now))
        steps = (
            f"takes {new} optimizer steps, not {old}"
            if new != old
            else f"still takes {new} optimizer steps"
        )
        changes.append(
            f"resuming with {now} process(es) instead of {before}: the effective batch size "
            f"is now {batch * now}, not {batch * before} (data.batch_size {batch} per "
            f"process), and an epoch {steps}; the learning rate follows the fraction of "
            f"the epoch done, so the schedule keeps its shape over {new} steps of "
            f"{batch * now} samples"
        )
    epochs = state["recipe"]["train"]["epochs"], recipe["train"]["epochs"]
    if epochs[0] != epochs[1]:
        changes.append(
            f"train.epochs changes from {epochs[0]} to {epochs[1]}: the learning-rate "
            f"schedule ({recipe['schedule']['name']}) is recomputed over {epochs[1]} epochs"
        )
    return changes
