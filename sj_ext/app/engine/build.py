"""Build what a recipe names: device, neurons, model, loss, optimizer, schedule.

Everything comes from the registries (:mod:`sj_ext.app.components`) by the names in the
recipe; the engine knows no particular method.
"""

import inspect
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from spikingjelly.activation_based import functional
from torch.utils.data import DataLoader, DistributedSampler

from ...models.layout import to_channels_last
from ..components import (
    DATASETS,
    LOSSES,
    MODELS,
    NEURONS,
    OPTIMIZERS,
    SCHEDULES,
    SURROGATES,
)
from ..data import DataSpec, encode, to_time_major
from ..data.subset import fixed_subset, split_off
from ..recipe import RecipeError
from . import distributed
from .errors import TrainingError

__all__ = [
    "Run",
    "autocast",
    "build_run",
    "decode",
    "learning_rate",
    "neuron_factory",
    "pick_device",
    "seed_everything",
    "set_lr",
    "time_major_input",
    "train_loader",
]


def _call(fn, supplied: dict, args: dict):
    """Call ``fn(**args)`` plus the engine-supplied arguments ``fn`` names."""
    params = inspect.signature(fn).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return fn(**{k: v for k, v in supplied.items() if takes_all or k in params}, **args)


def _built(section: str, recipe: dict, fn, supplied: dict):
    """``fn`` called with ``recipe[section]['args']`` (:func:`_call`); the plugin's errors
    name the argument, and this adds the recipe path (``model.args: variant must be ...``).

    :raises RecipeError: the builder refused its arguments (``ValueError``)
    """
    try:
        return _call(fn, supplied, recipe[section]["args"])
    except ValueError as e:
        name = recipe[section]["name"]
        raise RecipeError(f"{section} {name!r}", [f"{section}.args: {e}"]) from e


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str, info: distributed.DistInfo) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device is 'cuda' but CUDA is not available here")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    torch.cuda.set_device(info.local_rank)
    return torch.device("cuda", info.local_rank)


def neuron_factory(recipe: dict):
    """A factory of neurons configured as the recipe says.

    ``make(**overrides)`` builds a fresh neuron (and surrogate); a model passes
    ``overrides`` for what it sets per layer (e.g. ``window='dilated'``).
    """
    spec = recipe["neuron"]
    cls = NEURONS.get(spec["name"])
    sg = spec["surrogate"]

    def make(**overrides):
        supplied = {"step_mode": "m", "backend": spec["backend"]}
        if sg["name"] is not None:
            supplied["surrogate_function"] = SURROGATES.build(sg["name"], **sg["args"])
        return _call(cls, supplied, {**spec["args"], **overrides})

    return make


@dataclass
class Run:
    """Everything a recipe builds."""

    data: DataSpec
    model: nn.Module
    loss: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Callable[[float], float]  # the factor of optim.lr at a progress in epochs


def _subsets(data: DataSpec, d: dict) -> None:
    """Carve the validation split (``data.val_samples``) from the training split, then cut
    the splits to ``data.train_samples`` / ``data.test_samples`` (all fixed, seeded)."""
    try:
        if d["val_samples"] is not None:
            data.train, data.val = split_off(data.train, d["val_samples"], "data.val_samples")
        data.train = fixed_subset(data.train, d["train_samples"], "data.train_samples")
        data.test = fixed_subset(data.test, d["test_samples"], "data.test_samples")
    except ValueError as e:
        raise RecipeError(f"dataset {d['name']!r}", [str(e)]) from e


def build_run(recipe: dict, device: torch.device) -> Run:
    d = recipe["data"]
    data = DATASETS.build(d["name"], root=d["root"], T=d["T"], **d["args"])
    _subsets(data, d)
    model = _built(
        "model",
        recipe,
        MODELS.get(recipe["model"]["name"]),
        {
            "num_classes": data.num_classes,
            "in_channels": data.in_channels,
            "spiking_neuron": neuron_factory(recipe),
        },
    )
    functional.set_step_mode(model, "m")
    memory_format(model.to(device), recipe)
    loss = _call(
        LOSSES.get(recipe["loss"]["name"]),
        {"num_classes": data.num_classes},
        recipe["loss"]["args"],
    ).to(device)
    o = recipe["optim"]
    optimizer = OPTIMIZERS.build(
        o["name"], model.parameters(), lr=o["lr"], weight_decay=o["weight_decay"], **o["args"]
    )
    s = recipe["schedule"]
    schedule = SCHEDULES.build(
        s["name"],
        epochs=recipe["train"]["epochs"],
        warmup_epochs=s["warmup_epochs"],
        **s["args"],
    )
    return Run(data, model, loss, optimizer, schedule)


def memory_format(obj, recipe: dict):
    """The model or an input in the recipe's memory format (``train.channels_last``)."""
    return to_channels_last(obj) if recipe["train"]["channels_last"] else obj


def time_major_input(x: torch.Tensor, recipe: dict, data: DataSpec) -> torch.Tensor:
    if data.layout == "static":
        x = encode(x, recipe["data"]["T"], recipe["data"]["encoding"])
    else:
        x = to_time_major(x)
    return memory_format(x, recipe)


def decode(out: torch.Tensor) -> torch.Tensor:
    """Class scores ``[N, C]`` from per-step outputs ``[T, N, C]`` (mean over T)."""
    return out.mean(0) if out.dim() == 3 else out


def autocast(recipe: dict, device: torch.device):
    amp = recipe["train"]["amp"]
    enabled = amp is not None and device.type == "cuda"
    dtype = getattr(torch, amp) if enabled else None
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


def learning_rate(run: Run, recipe: dict, progress: float) -> float:
    """``optim.lr`` times the schedule at ``progress`` (in epochs, fractional)."""
    return recipe["optim"]["lr"] * run.schedule(progress)


def set_lr(run: Run, recipe: dict, progress: float) -> float:
    """Set every parameter group's rate to :func:`learning_rate` at ``progress``; return it."""
    lr = learning_rate(run, recipe, progress)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    return lr


def train_loader(run: Run, recipe: dict, info, epoch: int) -> DataLoader:
    """This epoch's shuffled training batches (of this process's shard under DDP)."""
    d = recipe["data"]
    if info.enabled:
        sampler = DistributedSampler(run.data.train, shuffle=True, seed=recipe["seed"])
        sampler.set_epoch(epoch)
        return DataLoader(
            run.data.train, d["batch_size"], sampler=sampler, num_workers=d["num_workers"]
        )
    generator = torch.Generator().manual_seed(recipe["seed"] * 100_003 + epoch)
    return DataLoader(
        run.data.train,
        d["batch_size"],
        shuffle=True,
        generator=generator,
        num_workers=d["num_workers"],
    )
