r"""The drawing kit of the report's figures (:mod:`sj_ext.app.report.figures`).

Selecting records (the last epoch's, the layers the runs name), labelling layers,
and laying out axes: every plot over training shares the x axis :data:`EPOCH_AXIS`
from 0 to :func:`last_epoch`; panels meant to be compared (one quantity for
several layers or runs) share their y range (:func:`share_y`); per-layer figures
put ``_COLUMNS`` plots on a row; heatmaps show a ``[layers, T]`` matrix with its
values.
"""

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "EPOCH_AXIS",
    "epoch_axis",
    "figure",
    "grid_shape",
    "heatmap",
    "hide_unused",
    "last_epoch",
    "layer_label",
    "layer_labels",
    "layer_names",
    "mean_rows",
    "of_last_epoch",
    "shade",
    "share_y",
]

EPOCH_AXIS = "epochs trained"  #: the x label of every plot over training
_SHADES = ("Blues", "Oranges")
_COLUMNS = 4  # subplots per row of the per-layer figures


def of_last_epoch(records: list[dict]) -> list[dict]:
    last = max(r["epoch"] for r in records)
    return [r for r in records if r["epoch"] == last]


def layer_names(runs, monitor: str) -> list[str]:
    names = []
    for run in runs:
        for record in run.monitors.get(monitor, []):
            names += [n for n in record["layers"] if n not in names]
    return names


def layer_label(name: str, kind: str | None = None) -> str:
    """``'conv_fc.2 (ParametricLIFNode)'``: the module's name in the net, and its class."""
    if not name:  # the net is the neuron itself
        return kind or "the net"
    return f"{name} ({kind})" if kind else name


def layer_labels(runs, monitor: str, names: list[str]) -> list[str]:
    """Labels of ``names``, with the class the records give (``kinds``; older ones have none)."""
    kinds = {}
    for run in runs:
        for record in run.monitors.get(monitor, []):
            if isinstance(record.get("kinds"), dict):
                kinds.update(record["kinds"])
    return [layer_label(n, kinds.get(n)) for n in names]


def last_epoch(runs) -> int:
    """The last epoch any run has records of (metrics or monitors)."""
    epochs = [row["epoch"] for run in runs for row in run.metrics["epochs"]]
    epochs += [r["epoch"] for run in runs for records in run.monitors.values() for r in records]
    return max(epochs)


def epoch_axis(ax, epochs: int) -> None:
    """The one x axis of every plot over training: epochs trained, from 0 to ``epochs``."""
    ax.set_xlim(0, epochs)
    ax.set_xlabel(EPOCH_AXIS)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def mean_rows(rows: list[list[float]]) -> np.ndarray:
    """Mean of equal-or-unequal-length rows (NaN-padded)."""
    width = max(len(r) for r in rows)
    padded = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        padded[i, : len(row)] = row
    return np.nanmean(padded, axis=0)


def figure(nrows: int, ncols: int, width: float = 4.2, height: float = 3.2):
    fig = Figure(figsize=(max(width * ncols, 6.4), height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def share_y(axes, x: bool = False) -> None:
    """One y range for ``axes``, panels meant to be compared: the union of their data's.

    With ``x``, one x range as well (scatter plots of one quantity per run).
    """
    first, *rest = axes
    for ax in rest:
        ax.sharey(first)
        if x:
            ax.sharex(first)


def grid_shape(count: int) -> tuple[int, int]:
    """``(rows, columns)`` for ``count`` per-layer plots, at most ``_COLUMNS`` a row."""
    cols = min(count, _COLUMNS)
    return -(-count // cols), cols


def hide_unused(axes, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


def shade(run_index: int, t: int, steps: int):
    return colormaps[_SHADES[run_index % 2]](0.45 + 0.55 * (t + 1) / max(steps, 1))


def heatmap(fig, ax, matrix: np.ndarray, rows: list[str], title: str, vmax: float, label: str):
    image = ax.imshow(matrix, aspect="auto", cmap="viridis", vmin=0.0, vmax=vmax)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xticks(range(matrix.shape[1]))
    ax.set_xlabel("time step t")
    ax.set_title(title)
    if matrix.size <= 96:
        for (i, j), value in np.ndenumerate(matrix):
            if np.isfinite(value):
                color = "white" if value < 0.6 * vmax else "black"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)
    fig.colorbar(image, ax=ax, label=label)
