"""What ``sj-ext compare`` shows of its table (:func:`sj_ext.app.compare.compare`): the
markdown, and the figure of each claim's arms per seed and their paired differences to
the baseline with intervals; :func:`write` saves them with the JSON."""

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..runfiles import atomic_write, percent, table_number, write_json

__all__ = ["figure", "markdown", "write"]

#: the colour of each verdict of :mod:`sj_ext.app.compare`
_VERDICT_COLORS = {"better": "C2", "worse": "C3", "inside the noise": "0.45"}


def _accuracy_panel(ax, claim: dict) -> None:
    arms = claim["arms"]
    x = np.arange(len(arms))
    seeds = sorted({s for arm in arms for s in arm["seeds"]})
    for j, seed in enumerate(seeds):
        y = [
            100 * arm["acc"][arm["seeds"].index(seed)] if seed in arm["seeds"] else np.nan
            for arm in arms
        ]
        ax.plot(x, y, "-o", color=f"C{j % 10}", alpha=0.75, ms=5, label=f"seed {seed}")
    means = [100 * a["mean"] for a in arms]
    ax.hlines(means, x - 0.22, x + 0.22, color="k", lw=2, zorder=3, label="mean")
    ax.set_xticks(x, [a["name"] for a in arms], rotation=20, ha="right")
    ax.set_xlim(-0.5, len(arms) - 0.5)
    ax.set_ylabel("final test accuracy (%)")
    question = f": {claim['question']}" if claim["question"] else ""
    ax.set_title(textwrap.fill(f"{claim['name']}{question}", 60), fontsize=10)
    if len(seeds) <= 10:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _difference_panel(ax, claim: dict, level: int) -> None:
    base = claim["arms"][0]
    arms = claim["arms"][1:]
    ax.axhline(0, color="k", lw=0.8)
    ax.set_ylabel(f"Δ vs {base['name']} (pp), {level}% CI")
    ax.set_title("paired difference (dots: each seed)", fontsize=10)
    if not arms:
        ax.text(0.5, 0.5, "no arm besides the baseline", ha="center", transform=ax.transAxes)
        ax.set_xticks([])
        return
    for i, arm in enumerate(arms):
        diff = arm["diff"]
        d = [
            100 * (arm["acc"][arm["seeds"].index(s)] - base["acc"][base["seeds"].index(s)])
            for s in diff["seeds"]
        ]
        jitter = np.linspace(-0.12, 0.12, len(d)) if len(d) > 1 else np.zeros(len(d))
        ax.scatter(i + 0.18 + jitter, d, s=12, color="0.6", zorder=2)
        if diff["mean"] is None:
            ax.annotate("no pairs", (i, 0), ha="center", va="bottom", fontsize=8)
            continue
        mean = 100 * diff["mean"]
        err = None
        if diff["low"] is not None:
            err = [[mean - 100 * diff["low"]], [100 * diff["high"] - mean]]
        color = _VERDICT_COLORS[arm["verdict"]]
        ax.errorbar(i, mean, yerr=err, fmt="o", color=color, capsize=5, zorder=3)
        pairs = f"n={diff['n']}"
        ax.annotate(
            pairs,
            (i, mean),
            xytext=(-6, 0),
            textcoords="offset points",
            ha="right",
            va="center",
            fontsize=7,
        )
    ax.set_xticks(range(len(arms)), [a["name"] for a in arms], rotation=20, ha="right")
    ax.set_xlim(-0.6, len(arms) - 0.4)


def figure(table: dict, path: str | Path) -> Path:
    """One row per claim, saved as PNG to ``path`` (atomically) and returned.

    Left: the final test accuracy of every seed per arm (x: the arms, baseline
    first), each seed's points joined by a line across the arms so that pairs
    show, and each arm's mean (black bar). Right: each arm's mean paired
    difference to the baseline in percentage points with its interval (error
    bar; green: better, red: worse, grey: inside the noise), the single
    differences as dots, and the zero line.
    """
    claims = [c for c in table["claims"] if c["arms"]]  # those with runs
    level = round(100 * table["confidence"])
    if claims:
        widest = max(len(c["arms"]) for c in claims)
        size = (max(9.0, 1.6 * widest + 5), 4.2 * len(claims))
        fig = Figure(figsize=size, layout="constrained")
        axes = fig.subplots(len(claims), 2, squeeze=False, width_ratios=[3, 2])
        for claim, (left, right) in zip(claims, axes, strict=True):
            _accuracy_panel(left, claim)
            _difference_panel(right, claim, level)
    else:
        fig = Figure(figsize=(6.0, 2.0))
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "no claim has a run of its baseline yet", ha="center", va="center")
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    return path


# ----------------------------------------------------------------------------------- markdown


def _delta(diff: dict) -> str:
    pairs = f"{diff['n']} pair{'s' if diff['n'] != 1 else ''}"
    if diff["mean"] is None:
        return "no common seed"
    if diff["low"] is None:
        return f"{100 * diff['mean']:+.2f} (no interval; {pairs})"
    return (
        f"{100 * diff['mean']:+.2f} [{100 * diff['low']:+.2f}, {100 * diff['high']:+.2f}] ({pairs})"
    )


def markdown(table: dict) -> str:
    """Per claim a heading with its question and a table of its arms (accuracies in %).

    Columns: arm, seeds, test accuracy (mean ± sample sd over seeds), worst class
    (digit: its accuracy averaged over seeds), seconds per run, spikes and synaptic
    operations per image,
    the paired difference to the baseline in percentage points with its interval
    and the number of pairs, the verdict.
    """
    level = round(100 * table["confidence"])
    lines = []
    for claim in table["claims"]:
        heading = f"## {claim['name']}"
        lines += [heading + (f": {claim['question']}" if claim["question"] else ""), ""]
        if claim.get("pending"):
            lines += [f"Not run yet: {', '.join(claim['pending'])}.", ""]
        if not claim["arms"]:
            continue
        lines += [
            f"Baseline `{claim['baseline']}`. Δ: mean paired difference of the final test "
            f"accuracy on the seeds both ran, with its {level}% Student t interval.",
            "",
            f"| arm | seeds | test acc % (mean ± sd) | worst class (digit: %) | s/run "
            f"| spikes/image | SynOps/image | Δ vs baseline (pp) [{level}% CI] | verdict |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for arm in claim["arms"]:
            worst = arm["worst_class"]
            worst = "–" if worst is None else f"{worst['class']}: {100 * worst['acc']:.1f}"
            seconds = "–" if arm["seconds_mean"] is None else f"{arm['seconds_mean']:.0f}"
            delta = "baseline" if arm["diff"] is None else _delta(arm["diff"])
            lines.append(
                f"| {arm['name']} | {arm['n']} | {percent(arm['mean'], arm['sd'])} | {worst} "
                f"| {seconds} | {table_number(arm['spikes_per_image_mean'], 3, 100)} "
                f"| {table_number(arm['synops_per_image_mean'], 3, 100)} | {delta} "
                f"| {arm['verdict'] or '–'} |"
            )
        lines.append("")
    for item in table.get("interactions", []):
        lines += [
            f"## {item['name']} (interaction): {item['question']}",
            "",
            f"Per seed, ({item['minuend']}: arm - baseline) - ({item['subtrahend']}: arm - "
            f"baseline), in percentage points, with its {level}% Student t interval: "
            + (
                "not run yet." if item["pending"] else f"{_delta(item['diff'])}, {item['verdict']}."
            ),
            "",
        ]
    return "\n".join(lines)


def write(table: dict, prefix: str | Path) -> list[Path]:
    """``PREFIX.json`` (the table), ``PREFIX.md`` (:func:`markdown`), ``PREFIX.png``
    (:func:`figure`), each written atomically; returns the three paths."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    json_path, md_path, png_path = (
        prefix.with_name(prefix.name + suffix) for suffix in (".json", ".md", ".png")
    )
    write_json(json_path, table)
    text = markdown(table)
    atomic_write(md_path, lambda f: f.write(text.encode()))
    figure(table, png_path)
    return [json_path, md_path, png_path]
