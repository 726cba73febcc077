"""What the methods did inside the claims study: the papers' mechanistic claims, per arm.

    python benchmarks/claims_mechanisms.py [RESULTS] [--out PREFIX]

Reads a sweep's results file (default ``benchmarks/results/claims_mnist_runs.json``:
every run carries its monitors' summary, :func:`sj_ext.app.runfiles.monitor_summary`) and
writes ``PREFIX.json`` and ``PREFIX.md`` (default
``benchmarks/results/claims_mnist_mechanisms``). Every figure is the mean over the
arm's seeds.

DS-ATGO (runs with ``firing_rate`` and ``grad_reach`` records), per spiking layer in
depth order, averaged over the sampled batches of the last epoch:

* the mean firing rate :math:`\\bar r = \\frac1T \\sum_t r_t` and its spread over
  time steps :math:`(\\max_t r_t - \\min_t r_t) / \\bar r` (0: the same rate at every
  step; the paper's claim is that the adaptive threshold keeps it stable);
* the gradient reach :math:`\\rho`, the share of neurons with a non-zero surrogate
  gradient, mean over steps (the paper's claim: more of them in the deep layers);

and per arm the spread of the layers' rates (std / mean over layers) and the reach of
the two deepest spiking layers.

CL-SNN (runs with ``curriculum`` records): the weight on easy samples
:math:`\\sum_{easy}\\sigma^*_i / \\sum_i \\sigma^*_i` and the mean :math:`\\sigma^*` of
easy and hard samples, over the first and the last quarter of training (the claim:
easy samples weigh more, then the weights even out as hard samples become easy).
"""

import argparse
import json
import statistics
from pathlib import Path

from sj_ext.app.runfiles import write_json

DEEPEST = 2  # layers counted as "deep" for the gradient reach


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def layer_table(run: dict) -> list[dict]:
    """Per spiking layer of one run: rate per step, mean rate, step spread, gradient reach."""
    rates, reach = run["monitors"]["firing_rate"], run["monitors"].get("grad_reach", {})
    rows = []
    for name, per_step in rates.items():
        mean = statistics.fmean(per_step)
        rows.append(
            {
                "layer": name,
                "rate_per_step": per_step,
                "mean_rate": mean,
                "step_spread": (max(per_step) - min(per_step)) / mean if mean > 0 else None,
                "grad_reach": _mean(reach.get(name, [])),
            }
        )
    return rows


def _per_layer_mean(tables: list[list[dict]]) -> list[dict]:
    keys = ("mean_rate", "step_spread", "grad_reach")
    return [
        {"layer": rows[0]["layer"], **{k: _mean([r[k] for r in rows]) for k in keys}}
        for rows in zip(*tables, strict=True)
    ]


def threshold_arms(runs: list[dict]) -> list[dict]:
    """DS-ATGO's mechanisms per arm (the runs that recorded firing rates)."""
    out = []
    for name in dict.fromkeys(r["name"] for r in runs if "firing_rate" in r["monitors"]):
        tables = [layer_table(r) for r in runs if r["name"] == name]
        layers = _per_layer_mean(tables)
        rates = [[row["mean_rate"] for row in t] for t in tables]
        out.append(
            {
                "arm": name,
                "seeds": len(tables),
                "layers": layers,
                "mean_rate": _mean([statistics.fmean(r) for r in rates]),
                "mean_step_spread": _mean([row["step_spread"] for row in layers]),
                "layer_rate_cv": _mean([statistics.pstdev(r) / statistics.fmean(r) for r in rates]),
                "deep_grad_reach": _mean([row["grad_reach"] for row in layers[-DEEPEST:]]),
                "first_grad_reach": layers[0]["grad_reach"],
            }
        )
    return out


def _phase(records: list[list], low: float, high: float) -> dict:
    chosen = [r for r in records if low <= r[0] < high]
    keys = ("weight_easy", "mean_sigma_easy", "mean_sigma_hard")
    return {k: _mean([r[i + 1] for r in chosen]) for i, k in enumerate(keys)}


def curriculum_arms(runs: list[dict]) -> list[dict]:
    """CL-SNN's curriculum per arm: weights on easy / hard samples early and late in training."""
    out = []
    for name in dict.fromkeys(r["name"] for r in runs if r["monitors"].get("curriculum")):
        records = [r["monitors"]["curriculum"] for r in runs if r["name"] == name]
        end = max(rec[-1][0] for rec in records)
        early = [_phase(rec, 0.0, end / 4 + 1e-9) for rec in records]
        late = [_phase(rec, 3 * end / 4, end + 1) for rec in records]
        out.append(
            {
                "arm": name,
                "seeds": len(records),
                **{
                    f"{when}_{k}": _mean([p[k] for p in phase])
                    for when, phase in (("early", early), ("late", late))
                    for k in early[0]
                },
            }
        )
    return out


def _f(value, digits=3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(result: dict) -> str:
    lines = [
        "### DS-ATGO: firing rates and gradient reach (mean over seeds)",
        "",
        "| arm | mean rate | step spread | layer-rate CV | grad reach, first layer "
        "| grad reach, 2 deepest |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for a in result["threshold"]:
        lines.append(
            f"| {a['arm']} | {_f(a['mean_rate'])} | {_f(a['mean_step_spread'])} | "
            f"{_f(a['layer_rate_cv'])} | {_f(a['first_grad_reach'])} | "
            f"{_f(a['deep_grad_reach'])} |"
        )
    lines += [
        "",
        "### CL-SNN: the curriculum (first / last quarter of training, mean over seeds)",
        "",
        "| arm | weight on easy, early | late | mean σ* easy, early | late "
        "| mean σ* hard, early | late |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for a in result["curriculum"]:
        lines.append(
            f"| {a['arm']} | {_f(a['early_weight_easy'])} | {_f(a['late_weight_easy'])} | "
            f"{_f(a['early_mean_sigma_easy'])} | {_f(a['late_mean_sigma_easy'])} | "
            f"{_f(a['early_mean_sigma_hard'])} | {_f(a['late_mean_sigma_hard'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "results", type=Path, nargs="?", default=Path("benchmarks/results/claims_mnist_runs.json")
    )
    p.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/claims_mnist_mechanisms"),
        help="writes OUT.json and OUT.md",
    )  # fmt: skip
    a = p.parse_args(argv)
    runs = json.loads(a.results.read_text())["runs"]
    result = {
        "results": str(a.results),
        "threshold": threshold_arms(runs),
        "curriculum": curriculum_arms(runs),
    }
    text = markdown(result)
    print(text)
    write_json(a.out.with_name(a.out.name + ".json"), result)
    a.out.with_name(a.out.name + ".md").write_text(text)
    print(f"wrote {a.out}.json and {a.out}.md")


if __name__ == "__main__":
    main()
