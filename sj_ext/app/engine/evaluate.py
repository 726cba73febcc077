"""Evaluation: the accuracy of a model on a run's held-out split, and of a saved checkpoint."""

import math
from pathlib import Path

import torch
import torch.nn as nn
from spikingjelly.activation_based import functional
from torch.utils.data import DataLoader, Subset, default_collate

from ..runfiles import evaluated_split
from . import distributed
from .build import (
    Run,
    autocast,
    build_run,
    decode,
    pick_device,
    seed_everything,
    time_major_input,
)
from .checkpoint import load_checkpoint
from .errors import TrainingError
from .runfolder import RecipeMismatch

__all__ = ["eval_split", "evaluate", "evaluate_checkpoint", "example_batch"]


def eval_split(data) -> str:
    """The split every epoch of a run on ``data`` evaluates (:func:`evaluated_split`)."""
    return evaluated_split(data.val is not None)


def example_batch(run: Run, recipe: dict, device: torch.device) -> torch.Tensor:
    """The first ``data.batch_size`` samples of the evaluated split (:func:`eval_split`),
    time-major (read without a loader: no RNG): what the energy monitor counts on, and
    what ``train.compile`` compiles with."""
    samples = getattr(run.data, eval_split(run.data))
    n = min(recipe["data"]["batch_size"], len(samples))
    x, _ = default_collate([samples[i] for i in range(n)])
    return time_major_input(x.to(device), recipe, run.data)


@torch.no_grad()
def evaluate(
    model, recipe, data, device, info, split: str = "test"
) -> tuple[float, int, list[float | None]]:
    """Accuracy over ``data``'s ``split`` ('test' or 'val'), split across processes:
    ``(acc, count, per_class)``.

    ``acc`` = correct / count over all processes; ``per_class[c]`` = correct / count
    over the samples of class ``c`` (``data.num_classes`` entries; ``None`` for a class
    with no sample evaluated).
    """
    model.eval()
    dataset = getattr(data, split)
    if info.enabled:
        dataset = Subset(dataset, range(info.rank, len(dataset), info.world_size))
    loader = DataLoader(
        dataset, batch_size=recipe["data"]["batch_size"], num_workers=recipe["data"]["num_workers"]
    )
    limit = recipe["train"]["limit_eval_batches"]
    C = data.num_classes
    correct = torch.zeros(C, dtype=torch.long, device=device)
    seen = torch.zeros(C, dtype=torch.long, device=device)
    for i, (x, y) in enumerate(loader):
        if limit is not None and i >= limit:
            break
        x, y = x.to(device), y.to(device)
        with autocast(recipe, device):
            out = model(time_major_input(x, recipe, data))
        functional.reset_net(model)
        correct += torch.bincount(y[decode(out).argmax(1) == y], minlength=C)
        seen += torch.bincount(y, minlength=C)
    counts = distributed.all_reduce_sum(correct.tolist() + seen.tolist(), info, device)
    correct, seen = counts[:C], counts[C:]
    total = sum(seen)
    per_class = [c / n if n else None for c, n in zip(correct, seen, strict=True)]
    return sum(correct) / max(total, 1), int(total), per_class


def _describe(recipe: dict) -> str:
    """The model a recipe builds, in words: its model and neuron, with their arguments."""
    model, neuron = recipe["model"], recipe["neuron"]
    return (
        f"model {model['name']!r} {model['args']} with neuron {neuron['name']!r} {neuron['args']}"
    )


def _mismatched_keys(model: nn.Module, saved: dict) -> dict[str, list[str]]:
    """The keys of ``saved`` that do not fit ``model``, by kind (loading each alone in turn:
    a module may accept another shape, as a neuron's ``running_threshold`` does)."""
    ours = model.state_dict().keys()

    def fits(key: str) -> bool:
        try:
            model.load_state_dict({key: saved[key]}, strict=False)
        except RuntimeError:
            return False
        return True

    return {
        "missing from the checkpoint": sorted(ours - saved.keys()),
        "unexpected": sorted(saved.keys() - ours),
        "of another shape": sorted(k for k in ours & saved.keys() if not fits(k)),
    }


def _load_model(model: nn.Module, state: dict, recipe: dict, checkpoint) -> None:
    """``state``'s weights into ``model``, built from ``recipe``.

    :raises RecipeMismatch: the weights do not fit (keys missing, unexpected, of another
        shape), naming the model the checkpoint holds and the one ``recipe`` builds.
    """
    saved = state["model"]
    try:
        model.load_state_dict(saved)
    except RuntimeError as e:
        mismatched = _mismatched_keys(model, saved)
        count = sum(map(len, mismatched.values()))
        if not count:
            raise
        kinds = ", ".join(f"{len(keys)} {kind}" for kind, keys in mismatched.items())
        raise RecipeMismatch(
            str(checkpoint),
            [
                f"the checkpoint holds {_describe(state['recipe'])}; the recipe builds "
                f"{_describe(recipe)}: {count} of {len(model.state_dict().keys() | saved.keys())} "
                f"state_dict keys do not match ({kinds}). Evaluate it with the recipe of its run"
            ],
        ) from e


def evaluate_checkpoint(recipe: dict, checkpoint: str | Path) -> dict:
    """Test accuracy of a saved checkpoint under ``recipe`` (single process).

    :raises RecipeMismatch: the checkpoint holds another model than ``recipe`` builds.
    """
    state = load_checkpoint(checkpoint)
    device = pick_device(recipe["train"]["device"], distributed.DistInfo())
    seed_everything(recipe["seed"])
    run = build_run(recipe, device)
    _load_model(run.model, state, recipe, checkpoint)
    acc, count, per_class = evaluate(run.model, recipe, run.data, device, distributed.DistInfo())
    if not math.isfinite(acc):
        raise TrainingError(f"evaluation of {checkpoint} gave {acc}")
    return {
        "checkpoint": str(checkpoint),
        "epoch": state["epoch"],
        "test_acc": acc,
        "test_samples": count,
        "per_class_acc": per_class,
    }
