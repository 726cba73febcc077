"""DS-ATGO's analysis on a pair of runs: firing-rate stability over time steps and layers,
and gradient reach by depth, adaptive threshold vs fixed.

    python benchmarks/dsatgo_analysis.py RUN_ADAPTIVE RUN_FIXED [--json PATH] [--epoch E]

Reads the ``firing_rate`` and ``grad_reach`` monitor records (``monitor.every`` set in the
recipe) of the last epoch (or ``--epoch``), averages them over the sampled batches, and
prints per layer, in depth order:

* the mean firing rate and its spread over time steps, ``(max_t r_t - min_t r_t) / mean_t r_t``
  (0 = the same rate at every step);
* the gradient reach (fraction of neurons with a surrogate gradient above ``eps`` of its peak),
  mean over steps;

and, per run, the spread of the layers' mean rates, ``std / mean`` over layers. Writes the
numbers as JSON. ``sj-ext report RUN_ADAPTIVE RUN_FIXED`` draws the same records.
"""

import argparse
import json
import statistics
from pathlib import Path

from sj_ext.monitor import read_records


def _mean_rows(rows: list[list[float]]) -> list[float]:
    return [statistics.fmean(col) for col in zip(*rows, strict=True)]


def layer_means(run: Path, monitor: str, epoch: int | None) -> tuple[int, dict[str, list[float]]]:
    """Per layer, the per-step values of ``monitor`` averaged over the epoch's sampled batches."""
    path = run / "monitor" / f"{monitor}.jsonl"
    records = read_records(path)
    if not records:
        raise SystemExit(f"{path}: no records (train with monitor.every set)")
    epoch = max(r["epoch"] for r in records) if epoch is None else epoch
    chosen = [r for r in records if r["epoch"] == epoch]
    if not chosen:
        raise SystemExit(f"{path}: no records of epoch {epoch}")
    names = list(chosen[0]["layers"])
    return epoch, {n: _mean_rows([r["layers"][n] for r in chosen]) for n in names}


def analyse(run: Path, epoch: int | None) -> dict:
    epoch, rates = layer_means(run, "firing_rate", epoch)
    _, reach = layer_means(run, "grad_reach", epoch)
    layers = []
    for depth, (name, per_step) in enumerate(rates.items()):
        mean = statistics.fmean(per_step)
        spread = (max(per_step) - min(per_step)) / mean if mean > 0 else None
        steps = reach.get(name)
        layers.append(
            {
                "depth": depth,
                "layer": name,
                "rate_per_step": per_step,
                "mean_rate": mean,
                "step_spread": spread,
                "grad_reach_per_step": steps,
                "grad_reach": statistics.fmean(steps) if steps else None,
            }
        )
    means = [layer["mean_rate"] for layer in layers]
    across = statistics.pstdev(means) / statistics.fmean(means) if statistics.fmean(means) else None
    return {"run": str(run), "epoch": epoch, "layers": layers, "layer_rate_cv": across}


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adaptive", type=Path)
    p.add_argument("fixed", type=Path)
    p.add_argument("--epoch", type=int, default=None)
    p.add_argument(
        "--json", type=Path, default=Path("benchmarks/results/dsatgo_mnist_analysis.json")
    )
    a = p.parse_args(argv)
    result = {"adaptive": analyse(a.adaptive, a.epoch), "fixed": analyse(a.fixed, a.epoch)}
    print(
        "| layer | rate adaptive | rate fixed | step spread adaptive | step spread fixed "
        "| grad reach adaptive | grad reach fixed |"
    )
    print("|---|---|---|---|---|---|---|")
    for ad, fx in zip(result["adaptive"]["layers"], result["fixed"]["layers"], strict=True):
        print(
            f"| {ad['layer']} | {_fmt(ad['mean_rate'])} | {_fmt(fx['mean_rate'])} "
            f"| {_fmt(ad['step_spread'])} | {_fmt(fx['step_spread'])} "
            f"| {_fmt(ad['grad_reach'])} | {_fmt(fx['grad_reach'])} |"
        )
    cv = {k: _fmt(result[k]["layer_rate_cv"]) for k in result}
    print(f"layer rate spread (std/mean): adaptive {cv['adaptive']}, fixed {cv['fixed']}")
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(result, indent=1))
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
