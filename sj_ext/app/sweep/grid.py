"""A sweep's grid file: read and checked (every key named in its errors), expanded into
jobs (configuration x seed, every recipe resolved), and the finished runs skipped.
See :mod:`sj_ext.app.sweep` for the file's format."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..checks import LIST, OPT_DICT, OPT_LIST, STR, Field, check, check_items, raise_problems
from ..engine import TrainingError
from ..engine.runfolder import refuse_incompatible
from ..recipe import load_recipe, safe_load

__all__ = ["SweepError", "Job", "load_grid", "read_claims", "finished"]

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


def _folder_name(name: str) -> str | None:
    return None if _NAME.fullmatch(name) else "expected a folder name of [A-Za-z0-9_.-]"


def _label(method: str) -> str | None:
    return None if method.strip() else "expected a label, got an empty string"


def _key_paths(overrides: dict) -> str | None:
    if all(isinstance(k, str) for k in overrides):
        return None
    return f"expected a mapping of key.path: value, got {overrides!r}"


def _seeds(seeds: list) -> str | None:
    if seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        return None
    return f"expected a non-empty list of ints, got {seeds!r}"


def _names(items: list) -> str | None:
    if items and all(isinstance(a, str) for a in items):
        return None
    return f"expected a non-empty list of names, got {items!r}"


def _non_empty(items: list) -> str | None:
    return None if items else "expected a non-empty list"


#: a grid file (:mod:`sj_ext.app.checks` specs: every key, its type and rules)
GRID = {
    "seeds": Field(LIST, help="the paired seeds, a list of ints", rule=_seeds),
    "overrides": Field(OPT_DICT, None, help="key.path: value for every run", rule=_key_paths),
    "configurations": Field(LIST, help="the arms, a list of mappings", rule=_non_empty),
    "claims": Field(OPT_LIST, None, help="what compare answers"),
    "interactions": Field(OPT_LIST, None, help="claims' effects set against each other"),
}
#: one item of ``configurations``
CONFIGURATION = {
    "name": Field(STR, help="the arm's name, its run folder's", rule=_folder_name),
    "method": Field(STR, help="a free label of the method", rule=_label),
    "recipe": Field(STR, help="the recipe's path, relative to the grid file"),
    "overrides": Field(OPT_DICT, None, help="key.path: value", rule=_key_paths),
}
#: one item of ``claims``
CLAIM = {
    "name": Field(STR, help="the claim's name"),
    "question": Field(STR, help="the question it answers"),
    "baseline": Field(STR, help="the configuration every arm is compared with"),
    "arms": Field(LIST, help="configuration names", rule=_names),
}
#: one item of ``interactions``
INTERACTION = {
    "name": Field(STR, help="the interaction's name"),
    "question": Field(STR, help="the question it answers"),
    "minuend": Field(STR, help="a claim of one arm"),
    "subtrahend": Field(STR, help="a claim of one arm"),
}


def _read_grid(path: Path) -> dict:
    source = str(path)
    try:
        grid = safe_load(path.read_text())
    except OSError as e:
        raise SweepError(f"{source}: cannot read the grid file: {e.strerror}") from e
    except Exception as e:  # yaml.YAMLError
        raise SweepError(f"{source}: not valid YAML: {e}") from e
    grid, problems = check(GRID, grid)
    raise_problems(SweepError, problems, source)
    configs, problems = check_items(CONFIGURATION, grid["configurations"], "configurations")
    raise_problems(SweepError, problems, source)
    names = [c["name"] for c in configs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SweepError(f"{source}: configuration names must be unique, {twice[0]!r} repeats")
    claims, problems = check_items(CLAIM, grid["claims"] or [], "claims")
    raise_problems(SweepError, problems, source)
    claims = [_check_claim(c, i, source, names) for i, c in enumerate(claims)]
    interactions, problems = check_items(INTERACTION, grid["interactions"] or [], "interactions")
    raise_problems(SweepError, problems, source)
    interactions = [_check_interaction(x, i, source, claims) for i, x in enumerate(interactions)]
    for config in configs:
        config["overrides"] = config["overrides"] or {}
    return {
        "seeds": grid["seeds"],
        "overrides": grid["overrides"] or {},
        "configurations": configs,
        "claims": claims,
        "interactions": interactions,
    }


def _check_claim(claim, i: int, source: str, names: list[str]) -> dict:
    """A claim (:data:`CLAIM`, checked), every arm a configuration's name."""
    where = f"{source}: claims[{i}]"
    for arm in [claim["baseline"], *claim["arms"]]:
        if arm not in names:
            raise SweepError(
                f"{where}: {arm!r} is no configuration of the grid ({', '.join(names)})"
            )
    return claim


def _check_interaction(item, i: int, source: str, claims: list[dict]) -> dict:
    """An interaction (:data:`INTERACTION`, checked), each of ``minuend`` and ``subtrahend``
    a claim of one arm besides its baseline (its effect is that arm minus the baseline, per
    seed)."""
    where = f"{source}: interactions[{i}]"
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
