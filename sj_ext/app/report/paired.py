"""The figure of ``sj-ext compare``: each claim's arms per seed, and their paired
differences to the baseline with intervals (the table of :mod:`sj_ext.app.compare`)."""

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..runfiles import atomic_write

__all__ = ["figure"]

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
