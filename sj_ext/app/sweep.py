r"""``sj-ext sweep``: a grid of recipes x seeds, run one by one, summarised per configuration.

A grid file (YAML)::

    seeds: [0, 1, 2]
    overrides: {data.root: data, train.epochs: 2}     # shared by every run
    configurations:
      - name: plif_ce                                 # a folder name: [A-Za-z0-9_.-]
        method: ce                                    # a free label (the method tested)
        recipe: ../recipes/clsnn_mnist.yaml           # relative to the grid file
        overrides: {loss.name: ce, loss.args: {}}

Every run is the recipe with the shared overrides, then the configuration's,
then the command line's ``--set`` (each ``key.path: value`` as ``sj-ext train
--set key.path=value``) and ``seed``; it trains in-process in its own folder
``OUT/<name>/seed<seed>``. Re-running the sweep skips finished runs (their
``metrics.json`` holds every epoch) and resumes interrupted ones from their
latest checkpoint, so a killed sweep continues where it stopped.

A grid may also name ``claims`` (``{name, question, baseline, arms}``: arms to
compare with a baseline arm, :mod:`sj_ext.app.compare`) and ``interactions``
(``{name, question, minuend, subtrahend}``: two claims of one arm each, whose
effects are compared seed by seed); both are copied into the results file.

After every run the JSON file is rewritten: ``{"grid", "runs": [...],
"summary": [...]}``; a run object holds ``name, method, recipe, overrides``
(all applied), ``seed, T, epochs, train_samples, test_samples`` (the counts of
the last epoch), ``device, final_test_acc, best_test_acc, best_val_acc`` (one of the
two bests is null: :func:`sj_ext.app.engine.train`), ``per_class_acc`` (the
last epoch's), ``seconds`` (training + evaluation, summed over epochs), ``commit``
(sj_ext's git commit at the run's start, from its ``environment.json``) and
``run_dir``; a summary object per configuration holds ``name, method, n`` and
the mean, the sample standard deviation (:math:`\frac{1}{n-1}`; ``None`` for
``n = 1``) of ``final_test_acc``, ``best_test_acc`` and ``best_val_acc`` (``None``
where the runs lack it: a run has one of the two bests), and the mean ``seconds``.
The same table as markdown (mean ± std in %) is printed and written beside the
JSON (``.md``).
"""

import fcntl
import hashlib
import json
import re
import statistics
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .engine import TrainingError, train
from .engine.runfolder import refuse_incompatible
from .recipe import load_recipe, safe_load
from .runfiles import percent, read_records, write_json

__all__ = ["SweepError", "Job", "load_grid", "run_sweep", "summarise", "markdown"]

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


def recipe_digest(recipe: dict) -> str:
    """SHA-256 of the resolved recipe (sorted JSON): what a results file records per run."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _recorded(job: Job, json_path: Path) -> dict | None:
    """The record of ``job`` in the results file, if it holds one of the same recipe.

    So a committed results file is enough to skip finished runs on a fresh clone.
    """
    for record in _read_results(json_path).get("runs", []):
        if (record["name"], record["seed"]) == (job.name, job.seed) and record.get(
            "recipe_sha256"
        ) == recipe_digest(job.recipe):
            return record
    return None


def _finished(job: Job) -> dict | None:
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


def _device(recipe: dict) -> str:
    name = recipe["train"]["device"]
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return f"cuda ({torch.cuda.get_device_name()})"
    return "cpu"


def _mean_rows(rows: list[list[float]]) -> list[float]:
    return [statistics.fmean(col) for col in zip(*rows, strict=True)]


def _layer_means(records: list[dict]) -> dict:
    """``{layer: [mean over records of the value at step t]}`` of layer-monitor records."""
    layers = records[-1]["layers"] if records else {}
    return {name: _mean_rows([r["layers"][name] for r in records]) for name in layers}


def monitor_summary(run_dir: Path) -> dict:
    """What a run's monitors recorded, condensed for a results file.

    ``firing_rate`` / ``grad_reach``: per layer, the value at every time step
    averaged over the sampled batches of the last epoch; ``curriculum``: per
    sampled batch ``[progress, weight_easy, mean_sigma_easy, mean_sigma_hard]``;
    ``energy``: the last epoch's spikes and synaptic operations per image.
    """
    folder, out = Path(run_dir) / "monitor", {}
    for name in ("firing_rate", "grad_reach"):
        path = folder / f"{name}.jsonl"
        records = read_records(path) if path.is_file() else []
        if records:
            last = [r for r in records if r["epoch"] == records[-1]["epoch"]]
            out[name] = _layer_means(last)
    path = folder / "curriculum.jsonl"
    if path.is_file():
        keys = ("progress", "weight_easy", "mean_sigma_easy", "mean_sigma_hard")
        out["curriculum"] = [[r[k] for k in keys] for r in read_records(path)]
    path = folder / "energy.jsonl"
    records = read_records(path) if path.is_file() else []
    if records:
        snn = records[-1]["snn"]
        out["energy"] = {"spikes": snn.get("spikes"), "synops": snn["ac"], "macs": snn["mac"]}
    return out


def _commit(run_dir: Path) -> str | None:
    """sj_ext's git commit the run started at (its ``environment.json``), or None."""
    path = Path(run_dir) / "environment.json"
    return json.loads(path.read_text()).get("commit") if path.is_file() else None


def _record(job: Job, metrics: dict) -> dict:
    last = metrics["epochs"][-1]
    monitors = monitor_summary(job.run_dir)
    energy = monitors.get("energy", {})
    seconds = sum(row["seconds"] for row in metrics["epochs"])
    return {
        "name": job.name,
        "method": job.method,
        "recipe": job.recipe_path,
        "overrides": job.overrides,
        "seed": job.seed,
        "T": job.recipe["data"]["T"],
        "epochs": len(metrics["epochs"]),
        "train_samples": last["train_samples"],
        "test_samples": last["test_samples"],
        "device": _device(job.recipe),
        "final_test_acc": metrics["final_test_acc"],
        "best_test_acc": metrics["best_test_acc"],
        "best_val_acc": metrics["best_val_acc"],
        "per_class_acc": last.get("per_class_acc"),
        "seconds": seconds,
        "seconds_per_epoch": seconds / len(metrics["epochs"]),
        "spikes_per_image": energy.get("spikes"),
        "synops_per_image": energy.get("synops"),
        "monitors": monitors,
        "recipe_sha256": recipe_digest(job.recipe),
        "commit": _commit(job.run_dir),
        "run_dir": str(job.run_dir),
    }


def _mean_std(values: list[float | None]) -> dict | None:
    """Mean and sample std; None when a value is None (a run has one of the two bests)."""
    if None in values:
        return None
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
    }


def summarise(runs: list[dict]) -> list[dict]:
    """Per configuration (in first-run order): ``n``, mean/std of the accuracies, mean seconds."""
    summary = []
    for name in dict.fromkeys(r["name"] for r in runs):
        rows = [r for r in runs if r["name"] == name]
        summary.append(
            {
                "name": name,
                "method": rows[0]["method"],
                "n": len(rows),
                "final_test_acc": _mean_std([r["final_test_acc"] for r in rows]),
                "best_test_acc": _mean_std([r["best_test_acc"] for r in rows]),
                # rows recorded before runs had a validation split lack the key
                "best_val_acc": _mean_std([r.get("best_val_acc") for r in rows]),
                "seconds": statistics.fmean(r["seconds"] for r in rows),
            }
        )
    return summary


def _pct(stat: dict | None) -> str:
    return "–" if stat is None else percent(stat["mean"], stat["std"])


def markdown(summary: list[dict]) -> str:
    """The summary as a markdown table (accuracies in %, mean ± sample std over seeds)."""
    lines = [
        "| configuration | method | seeds | final test acc (%) | best test acc (%) "
        "| best val acc (%) | s / run |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summary:
        lines.append(
            f"| {s['name']} | {s['method']} | {s['n']} | {_pct(s['final_test_acc'])} | "
            f"{_pct(s['best_test_acc'])} | {_pct(s['best_val_acc'])} | {s['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def _read_results(json_path: Path) -> dict:
    if not json_path.is_file():
        return {}
    try:
        return json.loads(json_path.read_text())
    except json.JSONDecodeError as e:
        raise SweepError(f"{json_path}: not a results file ({e}); move it aside") from e


@contextmanager
def _locked(json_path: Path):
    """An exclusive ``flock`` on ``json_path.lock``: sweeps side by side write one file."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    with open(json_path.with_name(json_path.name + ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _write(json_path: Path, grid: str, questions: dict, record: dict) -> dict:
    """Merge ``record`` into the results file (replacing the same name and seed), under the lock."""
    with _locked(json_path):
        runs = [
            r
            for r in _read_results(json_path).get("runs", [])
            if (r["name"], r["seed"]) != (record["name"], record["seed"])
        ]
        runs.append(record)
        summary = summarise(runs)
        result = {"grid": grid, **questions, "runs": runs, "summary": summary}
        write_json(json_path, result)
        json_path.with_suffix(".md").write_text(markdown(summary))
    return result


def run_sweep(grid: str | Path, jobs: list[Job], json_path: str | Path, log=print) -> dict:
    """Run (or skip, or resume) every job in order; merge each run into ``json_path``.

    A job is skipped when the results file already records it with the same
    resolved recipe (:func:`recipe_digest`), or when its folder holds the
    finished run. Runs of other jobs in the file are kept, so sweeps of
    several shards (or of a grid run piece by piece) fill one file.
    Returns ``{"grid", "claims", "runs", "summary"}`` as last written.
    """
    json_path = Path(json_path)
    questions = read_claims(grid)
    result = {"grid": str(grid), **questions, **_read_results(json_path)}
    for i, job in enumerate(jobs, 1):
        tag = f"[{i}/{len(jobs)}] {job.name} seed {job.seed}"
        if _recorded(job, json_path) is not None:
            log(f"{tag}: in {json_path} already, skipped")
            continue
        metrics = _finished(job)
        if metrics is not None:
            log(f"{tag}: finished before, skipped ({job.run_dir})")
        else:
            log(f"{tag}: training in {job.run_dir}")  # train says when it resumes
            metrics = train(job.recipe, job.run_dir, resume="auto", log=log)
        result = _write(json_path, str(grid), questions, _record(job, metrics))
    result.setdefault("runs", [])
    result["summary"] = summarise(result["runs"])
    return result
