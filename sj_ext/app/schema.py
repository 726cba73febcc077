"""The recipe schema without torch: every key, its type, default and range.

:data:`SCHEMA` lists every key of a recipe with its type and default
(:class:`Field`), :data:`RANGES` bounds the numbers (``optim.lr`` finite and
positive, ``data.T`` at most :data:`MAX_T`, ...). :func:`read_recipe` reads a
recipe file, applies ``--set`` overrides (:func:`apply_overrides`) and checks
all of that (:func:`check_schema`); ``args`` mappings are free-form here.
This module imports only PyYAML and the foundations (no torch, no builder), so
a misspelt or hostile recipe is refused in a fraction of a second;
:mod:`sj_ext.app.recipe` then checks the names and ``args`` against the builders.
Files are parsed by :mod:`sj_ext.app.safe_yaml` (bounded size, values and depth).
"""

import copy
import math
from pathlib import Path
from typing import Any

import yaml

from ..options import BACKENDS, DEFAULT_BACKEND, did_you_mean
from .checks import (
    BOOL,
    DICT,
    INT,
    LIST,
    NUMBER,
    OPT_INT,
    OPT_NUMBER,
    OPT_STR,
    REQUIRED,
    STR,
    Field,
    check,
)
from .runfiles import MONITORS
from .safe_yaml import YamlInputError, read_text
from .safe_yaml import load as safe_load

__all__ = [
    "MAX_T",
    "RANGES",
    "SCHEMA",
    "Field",
    "RecipeError",
    "apply_overrides",
    "check_schema",
    "flatten",
    "read_recipe",
    "schema_defaults",
]


SCHEMA: dict = {
    "seed": Field(INT, 0, help="seeds python, numpy and torch"),
    "data": {
        "name": Field(STR, help="dataset registry name"),
        "root": Field(OPT_STR, None, help="where the dataset's files lie"),
        "batch_size": Field(INT, help="samples per batch, on each process under torchrun"),
        "T": Field(INT, help="time steps, 1 to MAX_T = 1024"),
        "encoding": Field(STR, "direct", ("direct", "poisson"), "static images -> [T, N, ...]"),
        "num_workers": Field(INT, 0),
        "train_samples": Field(
            OPT_INT, None, help="a fixed class-stratified subset of the training split; null = all"
        ),
        "test_samples": Field(OPT_INT, None, help="the same for the test split; null = all"),
        "val_samples": Field(
            OPT_INT,
            None,
            help="a fixed class-stratified validation split carved from the training split "
            "(the same for every seed): each epoch evaluates it, the test set is read once, "
            "after the last epoch; null = none (each epoch evaluates the test set)",
        ),
        "args": Field(DICT, {}, help="dataset-specific arguments"),
    },
    "model": {
        "name": Field(STR, help="model registry name"),
        "args": Field(DICT, {}),
    },
    "neuron": {
        "name": Field(STR, help="neuron registry name"),
        "args": Field(DICT, {}),
        "backend": Field(STR, DEFAULT_BACKEND, BACKENDS),
        "surrogate": {
            "name": Field(OPT_STR, None, help="surrogate registry name; null = the neuron's own"),
            "args": Field(DICT, {}),
        },
    },
    "loss": {
        "name": Field(STR, "ce", help="loss registry name"),
        "args": Field(DICT, {}),
    },
    "optim": {
        "name": Field(STR, "sgd", help="optimizer registry name"),
        "lr": Field(NUMBER),
        "weight_decay": Field(NUMBER, 0.0),
        "args": Field(DICT, {}),
    },
    "schedule": {
        "name": Field(STR, "cosine", help="schedule registry name"),
        "warmup_epochs": Field(INT, 0),
        "args": Field(DICT, {}),
    },
    "train": {
        "epochs": Field(INT),
        "limit_train_batches": Field(OPT_INT, None),
        "limit_eval_batches": Field(OPT_INT, None),
        "device": Field(STR, "auto", ("auto", "cpu", "cuda")),
        "amp": Field(OPT_STR, None, (None, "float16", "bfloat16")),
        "grad_clip": Field(OPT_NUMBER, None, help="max gradient norm (> 0); null = no clipping"),
        "channels_last": Field(
            BOOL,
            False,
            help="channels-last memory format for the model's convolutions and its "
            "[T, N, C, H, W] inputs (faster convolutions on GPUs; same results)",
        ),
        "sync_threshold_stats": Field(
            BOOL, False, help="all-reduce adaptive-threshold statistics across processes"
        ),
        "compile": Field(
            OPT_STR,
            None,
            help="torch.compile the model whole (fullgraph) with this backend: 'inductor' "
            "(torch.compile's default, code generation) or 'aot_eager' (traced, no code "
            "generation); compiled before the first epoch, timed apart (compile_seconds); "
            "a graph break is an error; not with monitor.every; null = eager",
        ),
        "precise_bn": Field(
            OPT_INT,
            None,
            help="after the last epoch, re-estimate every BatchNorm's running statistics "
            "over this many training batches before the final evaluation; null = off",
        ),
    },
    "monitor": {
        "every": Field(
            OPT_INT,
            None,
            help="record the monitors every N training batches of an epoch (its first "
            "included) into OUT/monitor/; null = off",
        ),
        "names": Field(LIST, list(MONITORS), MONITORS, help="which monitors (a list)"),
        "reach_eps": Field(
            NUMBER, 0.01, help="grad_reach counts g'(z) > reach_eps * g'(0), in [0, 1)"
        ),
    },
}


class RecipeError(ValueError):
    """A recipe problem; ``problems`` lists each as ``'key.path: what is wrong'``."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


#: the most time steps ``data.T`` (every step's activations are kept for the backward pass)
MAX_T = 1024

# key -> (whether a value is in range, the rule); null values of optional keys are not checked
RANGES: dict[str, tuple] = {
    "seed": (lambda v: 0 <= v < 2**32, "must lie in [0, 2**32)"),
    "data.batch_size": (lambda v: v >= 1, "must be >= 1"),
    "data.T": (lambda v: 1 <= v <= MAX_T, f"must be >= 1 and at most MAX_T = {MAX_T}"),
    "data.num_workers": (lambda v: v >= 0, "must be >= 0"),
    "data.train_samples": (lambda v: v >= 1, "must be >= 1 or null (all)"),
    "data.test_samples": (lambda v: v >= 1, "must be >= 1 or null (all)"),
    "data.val_samples": (lambda v: v >= 1, "must be >= 1 or null (none)"),
    "optim.lr": (lambda v: math.isfinite(v) and v > 0, "must be a finite number > 0"),
    "optim.weight_decay": (lambda v: math.isfinite(v) and v >= 0, "must be finite and >= 0"),
    "schedule.warmup_epochs": (lambda v: v >= 0, "must be >= 0"),
    "train.epochs": (lambda v: v >= 1, "must be >= 1"),
    "train.limit_train_batches": (lambda v: v >= 1, "must be >= 1 or null (all)"),
    "train.limit_eval_batches": (lambda v: v >= 1, "must be >= 1 or null (all)"),
    "train.grad_clip": (lambda v: v > 0, "must be > 0 or null (no clipping)"),
    "train.precise_bn": (lambda v: v >= 1, "must be >= 1 or null (off)"),
    "monitor.every": (lambda v: v >= 1, "must be >= 1 or null (off)"),
    "monitor.reach_eps": (lambda v: 0 <= v < 1, "must lie in [0, 1)"),
}


def _check_ranges(r: dict, problems: list[str]) -> None:
    flat = flatten(r)
    for path, (ok, rule) in RANGES.items():
        value = flat[path]
        if value is not None and not ok(value):
            problems.append(f"{path}: {rule}, got {value!r}")
    if flat["train.compile"] is not None and flat["monitor.every"] is not None:
        problems.append(
            "train.compile: the monitors hook the modules while they run, which a compiled "
            "graph does not do; set monitor.every=null (or train.compile=null)"
        )


def _require_mapping(recipe, source: str) -> None:
    if not isinstance(recipe, dict):
        raise RecipeError(source, [f"a recipe is a mapping, got {type(recipe).__name__}"])


def check_schema(recipe, source: str = "<recipe>") -> dict:
    """``recipe`` checked against :data:`SCHEMA` and :data:`RANGES`, defaults filled.

    :raises RecipeError: naming ``source``, each key and what is wrong with it
    """
    _require_mapping(recipe, source)
    out, problems = check(SCHEMA, recipe)
    if not problems:
        _check_ranges(out, problems)
    if problems:
        raise RecipeError(source, problems)
    return out


def _parse_override(item: str, source: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise RecipeError(source, [f"--set {item!r}: expected key.path=value"])
    key, raw = item.split("=", 1)
    try:
        value = safe_load(raw)
    except (yaml.YAMLError, YamlInputError) as e:
        raise RecipeError(source, [f"--set {key}: cannot parse value {raw!r}: {e}"]) from e
    return key.strip().split("."), value


def apply_overrides(recipe: dict, overrides: list[str], source: str = "<recipe>") -> dict:
    """Apply ``key.path=value`` strings (values parsed as YAML) to a copy of ``recipe``.

    The path must name a key of :data:`SCHEMA`, or lie inside an ``args`` mapping.
    """
    recipe = copy.deepcopy(recipe)
    for item in overrides:
        keys, value = _parse_override(item, source)
        node, spec = recipe, SCHEMA
        for i, key in enumerate(keys):
            free = spec is None  # inside an 'args' mapping: any key
            if not free and key not in spec:
                path = ".".join(keys[: i + 1])
                raise RecipeError(source, [f"--set {path}: unknown key{did_you_mean(key, spec)}"])
            last = i == len(keys) - 1
            sub_spec = None if free else spec[key]
            if last:
                node[key] = value
            else:
                if isinstance(sub_spec, Field) and DICT != sub_spec.types:
                    raise RecipeError(source, [f"--set {item}: {key} is not a mapping"])
                node = node.setdefault(key, {})
                if node is None or not isinstance(node, dict):
                    raise RecipeError(source, [f"--set {item}: {key} is not a mapping"])
                spec = sub_spec if isinstance(sub_spec, dict) else None
    return recipe


def read_recipe(path: str | Path, overrides: list[str] = ()) -> dict:
    """Read a YAML recipe, apply ``--set`` overrides, and :func:`check_schema` it.

    :raises RecipeError: the file cannot be read, is refused by :mod:`sj_ext.app.safe_yaml`,
        is not valid YAML, or fails the schema
    """
    source = str(path)
    try:
        raw = safe_load(read_text(path))
    except OSError as e:
        raise RecipeError(source, [f"cannot read the recipe: {e.strerror}"]) from e
    except YamlInputError as e:
        raise RecipeError(source, [f"refused: {e}"]) from e
    except yaml.YAMLError as e:
        raise RecipeError(source, [f"not valid YAML: {e}"]) from e
    if raw is None:
        raw = {}
    _require_mapping(raw, source)
    return check_schema(apply_overrides(raw, list(overrides), source), source)


def schema_defaults() -> dict[str, Any]:
    """``{'train.channels_last': False, ...}``: every key of :data:`SCHEMA` that has a default."""
    return {
        f"{section}.{key}": field.default
        for section, fields in SCHEMA.items()
        if isinstance(fields, dict)
        for key, field in fields.items()
        if isinstance(field, Field) and field.default is not REQUIRED
    }


def flatten(recipe: dict, prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}``; ``args`` mappings are flattened too."""
    out = {}
    for key, value in recipe.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out
