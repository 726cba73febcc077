"""A sweep's results file: one row per finished run, merged under a lock by sweeps side by
side, and the summary per configuration (JSON and a markdown table).
See :mod:`sj_ext.app.sweep` for the file's format."""

import fcntl
import hashlib
import json
import statistics
from contextlib import contextmanager
from pathlib import Path

import torch

from ..runfiles import monitor_summary, percent, write_json
from .grid import SweepError

__all__ = ["recipe_digest", "recorded", "record", "summarise", "markdown", "read_results", "write"]


def _set_keys(value):
    """``value`` without the mapping keys whose value is null, at every depth."""
    if isinstance(value, dict):
        return {k: _set_keys(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_set_keys(v) for v in value]
    return value


def recipe_digest(recipe: dict) -> str:
    """SHA-256 of the resolved recipe (sorted JSON) without its null values: what a results
    file records per run. A null is "not set" in a recipe, so a key added to the schema
    with a null default leaves the digests of the runs already recorded as they were."""
    return hashlib.sha256(json.dumps(_set_keys(recipe), sort_keys=True).encode()).hexdigest()


def recorded(job, json_path: Path) -> dict | None:
    """The record of ``job`` in the results file, if it holds one of the same recipe.

    So a committed results file is enough to skip finished runs on a fresh clone.
    """
    for record in read_results(json_path).get("runs", []):
        if (record["name"], record["seed"]) == (job.name, job.seed) and record.get(
            "recipe_sha256"
        ) == recipe_digest(job.recipe):
            return record
    return None


def _device(recipe: dict) -> str:
    name = recipe["train"]["device"]
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return f"cuda ({torch.cuda.get_device_name()})"
    return "cpu"


def _commit(run_dir: Path) -> str | None:
    """sj_ext's git commit the run started at (its ``environment.json``), or None."""
    path = Path(run_dir) / "environment.json"
    return json.loads(path.read_text()).get("commit") if path.is_file() else None


def record(job, metrics: dict) -> dict:
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


def read_results(json_path: Path) -> dict:
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


def write(json_path: Path, grid: str, questions: dict, record: dict) -> dict:
    """Merge ``record`` into the results file (replacing the same name and seed), under the lock."""
    with _locked(json_path):
        runs = [
            r
            for r in read_results(json_path).get("runs", [])
            if (r["name"], r["seed"]) != (record["name"], record["seed"])
        ]
        runs.append(record)
        summary = summarise(runs)
        result = {"grid": grid, **questions, "runs": runs, "summary": summary}
        write_json(json_path, result)
        json_path.with_suffix(".md").write_text(markdown(summary))
    return result
