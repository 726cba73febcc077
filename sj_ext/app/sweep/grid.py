"""A sweep's grid file: read and checked (every key named in its errors), expanded into
jobs (configuration x seed, every recipe resolved), and the finished runs skipped.
See :mod:`sj_ext.app.sweep` for the file's format."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..engine import TrainingError
from ..engine.runfolder import refuse_incompatible
from ..recipe import load_recipe, safe_load

__all__ = ["SweepError", "Job", "load_grid", "read_claims", "finished"]

_GRID_KEYS = {"seeds", "overrides", "configurations", "claims", "interactions"}
_CLAIM_KEYS = {"name", "question", "baseline", "arms"}
_INTERACTION_KEYS = {"name", "question", "minuend", "subtrahend"}
_CONFIG_KEYS = {"name", "method", "recipe", "overrides"}
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class SweepError(ValueError):
    """A bad grid file (names the file and the key), or a run folder that does not fit."""


@dataclass
class Job:
    """One run of the grid: a configuration at a seed, its resolved recipe and folder."""

    name: str
    method: str
    recipe_path: str
    overrides: dict
    seed: int
    recipe: dict
    run_dir: Path


def _as_sets(overrides: dict) -> list[str]:
    """``{key.path: value}`` -> ``['key.path=<value as JSON>', ...]`` (JSON is YAML)."""
    return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]


def _mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise SweepError(f"{where}: expected a mapping of key.path: value, got {value!r}")
    return value


def _check_config(config, i: int, source: str) -> dict:
    where = f"{source}: configurations[{i}]"
    if not isinstance(config, dict):
        raise SweepError(f"{where}: expected a mapping, got {config!r}")
    unknown = sorted(set(config) - _CONFIG_KEYS)
    missing = sorted(_CONFIG_KEYS - {"overrides"} - set(config))
    if unknown or missing:
        raise SweepError(
            f"{where}: "
            + "; ".join(
                [f"unknown key {k!r}" for k in unknown] + [f"missing key {k!r}" for k in missing]
            )
            + f" (keys: {', '.join(sorted(_CONFIG_KEYS))})"
        )
    name = config["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SweepError(f"{where}.name: expected a folder name of [A-Za-z0-9_.-], got {name!r}")
    if not isinstance(config["method"], str) or not config["method"].strip():
        raise SweepError(f"{where}.method: expected a label (a string), got {config['method']!r}")
    if not isinstance(config["recipe"], str):
        raise SweepError(f"{where}.recipe: expected a path, got {config['recipe']!r}")
    return {**config, "overrides": _mapping(config.get("overrides"), f"{where}.overrides")}


def _read_grid(path: Path) -> dict:
    source = str(path)
    try:
        grid = safe_load(path.read_text())
    except OSError as e:
        raise SweepError(f"{source}: cannot read the grid file: {e.strerror}") from e
    except Exception as e:  # yaml.YAMLError
        raise SweepError(f"{source}: not valid YAML: {e}") from e
    if not isinstance(grid, dict):
        raise SweepError(f"{source}: a grid file is a mapping with {sorted(_GRID_KEYS)}")
    unknown = sorted(set(grid) - _GRID_KEYS)
    if unknown:
        raise SweepError(f"{source}: unknown key {unknown[0]!r} (keys: {sorted(_GRID_KEYS)})")
    seeds = grid.get("seeds")
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise SweepError(f"{source}: seeds: expected a non-empty list of ints, got {seeds!r}")
    configs = grid.get("configurations")
    if not isinstance(configs, list) or not configs:
        raise SweepError(f"{source}: configurations: expected a non-empty list, got {configs!r}")
    configs = [_check_config(c, i, source) for i, c in enumerate(configs)]
    names = [c["name"] for c in configs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SweepError(f"{source}: configuration names must be unique, {twice[0]!r} repeats")
    shared = _mapping(grid.get("overrides"), f"{source}: overrides")
    claims = [_check_claim(c, i, source, names) for i, c in enumerate(grid.get("claims") or [])]
    interactions = [
        _check_interaction(x, i, source, claims)
        for i, x in enumerate(grid.get("interactions") or [])
    ]
    return {
        "seeds": seeds,
        "overrides": shared,
        "configurations": configs,
        "claims": claims,
        "interactions": interactions,
    }


def _check_claim(claim, i: int, source: str, names: list[str]) -> dict:
    """A claim: ``{name, question, baseline, arms}``, every arm a configuration's name."""
    where = f"{source}: claims[{i}]"
    if not isinstance(claim, dict) or set(claim) != _CLAIM_KEYS:
        raise SweepError(f"{where}: expected a mapping with exactly {sorted(_CLAIM_KEYS)}")
    arms = claim["arms"]
    if not isinstance(arms, list) or not arms:
        raise SweepError(f"{where}.arms: expected a non-empty list of configuration names")
    for arm in [claim["baseline"], *arms]:
        if arm not in names:
            raise SweepError(
                f"{where}: {arm!r} is no configuration of the grid ({', '.join(names)})"
            )
    return claim


def _check_interaction(item, i: int, source: str, claims: list[dict]) -> dict:
    """An interaction: ``{name, question, minuend, subtrahend}``, each of the two a claim of
    one arm besides its baseline (its effect is that arm minus the baseline, per seed)."""
    where = f"{source}: interactions[{i}]"
    if not isinstance(item, dict) or set(item) != _INTERACTION_KEYS:
        raise SweepError(f"{where}: expected a mapping with exactly {sorted(_INTERACTION_KEYS)}")
    by_name = {c["name"]: c for c in claims}
    for key in ("minuend", "subtrahend"):
        claim = by_name.get(item[key])
        if claim is None:
            raise SweepError(
                f"{where}.{key}: {item[key]!r} is no claim of the grid ({', '.join(by_name)})"
            )
        if len([a for a in claim["arms"] if a != claim["baseline"]]) != 1:
            raise SweepError(
                f"{where}.{key}: claim {item[key]!r} must have one arm besides its baseline"
            )
    return item


def read_claims(path: str | Path) -> dict:
    """``{"claims": [...], "interactions": [...]}`` of a grid file (empty lists when it
    names none)."""
    grid = _read_grid(Path(path))
    return {"claims": grid["claims"], "interactions": grid["interactions"]}


def load_grid(
    path: str | Path,
    out: str | Path,
    sets: list[str] = (),
    only: list[str] = (),
    seeds: list[int] | None = None,
    shard: tuple[int, int] = (1, 1),
) -> list[Job]:
    """The jobs of a grid file, every recipe resolved (so any error comes before any run).

    :param out: the sweep folder; a job runs in ``out/<name>/seed<seed>``
    :param sets: ``key.path=value`` overrides applied last, to every run
    :param only: run only these configurations (all when empty)
    :param seeds: run only these seeds (the grid's when ``None``)
    :param shard: ``(k, n)``: only every ``n``-th job from the ``k``-th (1-based), so that
        ``n`` sweeps side by side share the grid (one thread each)
    :raises SweepError: a bad grid file, ``only`` name or shard
    :raises RecipeError: a recipe or override that does not resolve
    """
    path = Path(path)
    grid = _read_grid(path)
    configs = grid["configurations"]
    unknown = sorted(set(only) - {c["name"] for c in configs})
    if unknown:
        known = ", ".join(c["name"] for c in configs)
        raise SweepError(f"--only {unknown[0]}: no such configuration in {path} ({known})")
    jobs = []
    for config in configs:
        if only and config["name"] not in only:
            continue
        recipe_path = path.parent / config["recipe"]
        applied = _as_sets(grid["overrides"]) + _as_sets(config["overrides"]) + list(sets)
        overrides = {k.strip(): safe_load(v) for k, v in (a.split("=", 1) for a in applied)}
        for seed in grid["seeds"] if seeds is None else seeds:
            recipe = load_recipe(recipe_path, applied + [f"seed={seed}"])
            run_dir = Path(out) / config["name"] / f"seed{seed}"
            job = Job(
                config["name"], config["method"], config["recipe"], overrides, seed, recipe, run_dir
            )
            jobs.append(job)
    k, n = shard
    if not 1 <= k <= n:
        raise SweepError(f"--shard {k}/{n}: expected K/N with 1 <= K <= N")
    return jobs[k - 1 :: n]


def finished(job: Job) -> dict | None:
    """The metrics of a finished run in ``job.run_dir``, or ``None`` (not run, or not finished).

    :raises SweepError: the folder holds a run of a different recipe
    """
    saved = job.run_dir / "recipe.yaml"
    if not saved.is_file():
        return None
    try:
        refuse_incompatible(load_recipe(saved), job.recipe, saved)
    except TrainingError as e:
        raise SweepError(
            f"{job.run_dir} holds a run of another recipe ({e}); "
            "choose another --out or delete the folder"
        ) from e
    metrics_file = job.run_dir / "metrics.json"
    if not metrics_file.is_file():
        return None
    metrics = json.loads(metrics_file.read_text())
    done = len(metrics["epochs"]) >= job.recipe["train"]["epochs"]
    return metrics if done else None
