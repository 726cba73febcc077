"""Recipes: YAML (pure data) -> a checked, fully resolved nested dict.

A recipe names everything it builds; the registries of :mod:`sj_ext.app.components`
turn the names into objects (importing this module imports :mod:`sj_ext.app.data`,
:mod:`~sj_ext.models`, :mod:`~sj_ext.neuron`, :mod:`~sj_ext.surrogate`,
:mod:`~sj_ext.loss` and :mod:`~sj_ext.app.optim`, which fill them). First
:mod:`sj_ext.app.schema` (no torch) checks the keys, types and ranges:
:data:`~sj_ext.app.schema.SCHEMA` lists every key, its type and its default;
``args`` mappings are free-form there and checked here against the named
builder's signature. Keys every recipe has, with fixed meanings:
``data.root``, ``data.batch_size``, ``data.T`` (time steps), ``train.epochs``,
``train.limit_train_batches`` / ``train.limit_eval_batches`` (cap batches per
epoch; null = all), ``data.train_samples`` / ``data.test_samples`` (a fixed
subset of a split, the same for every seed; null = all), ``data.val_samples`` (a
fixed validation split carved from the training split: each epoch evaluates it and
the test set is read once, after the last epoch), ``train.device``
('auto' | 'cpu' | 'cuda'), ``seed``. :data:`~sj_ext.app.schema.RANGES` bounds the numbers
(``optim.lr`` finite and positive, ``data.T`` at most ``MAX_T``, ...); each
dataset's own argument checks run too. Files are parsed by
:mod:`sj_ext.app.safe_yaml` (bounded size, values and depth).
"""

import inspect
import re
from pathlib import Path

# importing the components fills every registry (the plugin's names, the datasets, optimizers)
from .components import (
    DATASETS,
    LOSSES,
    MODELS,
    NEURONS,
    OPTIMIZERS,
    SCHEDULES,
    SURROGATES,
)
from .safe_yaml import load as safe_load
from .schema import (
    SCHEMA,
    RecipeError,
    apply_overrides,
    check_schema,
    flatten,
    read_recipe,
    schema_defaults,
)

__all__ = [
    "RecipeError",
    "SCHEMA",
    "load_recipe",
    "resolve",
    "apply_overrides",
    "flatten",
    "safe_load",
    "schema_defaults",
]

# keys that may change between a run and its --resume
RESUMABLE_CHANGES = (
    "data.root",
    "data.num_workers",
    "train.epochs",
    "train.device",
    "train.compile",
    "train.limit_eval_batches",
    "monitor.every",
    "monitor.names",
    "monitor.reach_eps",
)


def _check_names(r: dict, problems: list[str]):
    engine_supplied = {
        "data": ("root", "T"),
        "model": ("num_classes", "in_channels", "spiking_neuron"),
        "neuron": ("surrogate_function", "step_mode", "backend"),
        "surrogate": (),
        "loss": ("num_classes",),
        "optim": ("params", "lr", "weight_decay"),
        "schedule": ("epochs", "warmup_epochs"),
    }
    sections = [
        ("data", DATASETS, r["data"]),
        ("model", MODELS, r["model"]),
        ("neuron", NEURONS, r["neuron"]),
        ("loss", LOSSES, r["loss"]),
        ("optim", OPTIMIZERS, r["optim"]),
        ("schedule", SCHEDULES, r["schedule"]),
    ]
    node = r["neuron"]
    if node["backend"] != "torch" and node["name"] in NEURONS:
        params = inspect.signature(NEURONS.get(node["name"])).parameters
        if "backend" not in params:
            problems.append(
                f"neuron.backend: neuron {node['name']!r} has only the torch backend, "
                f"got {node['backend']!r}"
            )
    if r["neuron"]["surrogate"]["name"] is not None:
        sections.append(("neuron.surrogate", SURROGATES, r["neuron"]["surrogate"]))
    for path, registry, section in sections:
        supplied = engine_supplied[path.split(".")[-1]]
        for problem in registry.check(section["name"], section["args"], supplied):
            where = "name" if problem.startswith("unknown") else "args"
            problems.append(f"{path}.{where}: {problem}")
    if not problems:
        _check_dataset_values(r["data"], problems)


def _check_dataset_values(d: dict, problems: list[str]) -> None:
    """The dataset builder's own range checks on ``data.args`` (nothing is read)."""
    kwargs = {"root": d["root"], "T": d["T"], **d["args"]}
    for problem in DATASETS.check_values(d["name"], kwargs):
        key = re.match(r"(data\.args\.\w+) (.*)", problem, re.S)
        problems.append(f"{key[1]}: {key[2]}" if key else f"data.args: {problem}")


def resolve(recipe: dict, source: str = "<recipe>") -> dict:
    """Check ``recipe`` against :data:`SCHEMA` and the registries; fill defaults.

    :raises RecipeError: naming ``source``, each key and what is wrong with it
    """
    out, problems = check_schema(recipe, source), []
    _check_names(out, problems)
    if problems:
        raise RecipeError(source, problems)
    return out


def load_recipe(path: str | Path, overrides: list[str] = ()) -> dict:
    """Read a YAML recipe, apply ``--set`` overrides, and :func:`resolve` it."""
    return resolve(read_recipe(path, overrides), str(path))
