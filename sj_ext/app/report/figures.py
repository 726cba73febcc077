r"""The figures of ``sj-ext report``: one function per figure, all on one epoch axis.

Each figure function takes the runs (:class:`sj_ext.app.report.RunRecords`) and
returns ``None`` (no run has the records it draws) or ``(figure, labels of
the runs it shows)``; :func:`figures` lists them by file name, :data:`CAPTIONS`
gives each its heading and caption in ``report.md``. Adding a figure is a
function, an entry in :func:`figures` and a caption.

Every plot over training shares one x axis, "epochs trained", from 0 to the
last epoch: the training curves put epoch ``e``'s values at ``e`` (after ``e``
epochs), the monitors put a batch sampled in epoch ``e`` at its ``progress``
``e - 1 + i / n_batches`` (the epochs trained when it was sampled). Layers are
labelled by their module path in the net (as ``named_modules`` gives it) and
class. Panels that show one quantity for several layers or runs share their
y range, and heatmaps of one quantity their colour range, so that they compare.
"""

import numpy as np
from matplotlib.ticker import MaxNLocator

from ..class_health import WEIGHT_RATIO_MIN, summed_class_rates
from ..runfiles import EVAL_KEYS, held_out_split
from .axes import (
    EPOCH_AXIS,
    epoch_axis,
    figure,
    grid_shape,
    heatmap,
    hide_unused,
    last_epoch,
    layer_label,
    layer_labels,
    layer_names,
    mean_rows,
    of_last_epoch,
    shade,
    share_y,
)

__all__ = ["FIGURES", "CAPTIONS", "EPOCH_AXIS", "figures", "last_epoch", "layer_label"]

FIGURES = (
    "training_curves.png",
    "firing_rate.png",
    "thresholds.png",
    "sigma.png",
    "grad_reach.png",
    "group_rate.png",
    "curriculum.png",
    "classes.png",
)


# ------------------------------------------------------------------------------------ figures
# Each returns None (no run has the records) or (figure, labels of the runs it shows).


def _loss_title(runs) -> str:
    """``Training loss``, naming the recipes' losses, and saying so when a loss went below 0
    (the confidence-aware loss does: it rewards the easy samples)."""
    names = sorted({(run.recipe or {}).get("loss", {}).get("name", "?") for run in runs})
    title = f"Training loss ({', '.join(names)})"
    if any(r["train_loss"] < 0 for run in runs for r in run.metrics["epochs"]):
        title += "\nbelow 0: this loss can be negative"
    return title


def _training_curves(runs, epochs: int):
    fig, axes = figure(1, 2, width=5.5)
    loss_ax, acc_ax = axes[0]
    for i, run in enumerate(runs):
        rows = run.metrics["epochs"]
        done = [r["epoch"] for r in rows]
        color = f"C{i}"
        loss_ax.plot(done, [r["train_loss"] for r in rows], color=color, label=run.label)
        split = held_out_split(rows[0])
        acc = [r[EVAL_KEYS[split][0]] for r in rows]
        acc_ax.plot(done, acc, color=color, label=f"{run.label} {split}")
        acc_ax.plot(
            done, [r["train_acc"] for r in rows], ":", color=color, label=f"{run.label} train"
        )
    loss_ax.set(ylabel="training loss", title=_loss_title(runs))
    acc_ax.set(ylabel="accuracy", title="Accuracy")
    for ax in (loss_ax, acc_ax):
        epoch_axis(ax, epochs)
    loss_ax.legend()
    acc_ax.legend()
    return fig, [r.label for r in runs]


def _rate_matrix(records: list[dict], names: list[str]) -> np.ndarray:
    """``[layers, steps]``: the mean over ``records`` (NaN where a layer or step is missing)."""
    rows = [[r["layers"][n] for r in records if n in r["layers"]] for n in names]
    steps = max((len(v) for row in rows for v in row), default=1)
    matrix = np.full((len(names), steps), np.nan)
    for i, row in enumerate(rows):
        if row:
            mean = mean_rows(row)
            matrix[i, : len(mean)] = mean
    return matrix


def _firing_rate(runs, epochs: int):
    runs = [r for r in runs if "firing_rate" in r.monitors]
    if not runs:
        return None
    names = layer_names(runs, "firing_rate")
    labels = layer_labels(runs, "firing_rate", names)
    fig, axes = figure(2, len(runs), width=5.0, height=0.45 * len(names) + 2.6)
    lasts = [of_last_epoch(run.monitors["firing_rate"]) for run in runs]
    matrices = [_rate_matrix(last, names) for last in lasts]
    vmax = max(float(np.nanmax(m)) if np.isfinite(m).any() else 0.0 for m in matrices) or 1.0
    for col, (run, last, matrix) in enumerate(zip(runs, lasts, matrices, strict=True)):
        title = f"{run.label}: firing rate, epoch {last[0]['epoch']}"
        heatmap(fig, axes[0, col], matrix, labels, title, vmax, "spikes per neuron per step")
        ax = axes[1, col]
        for name, label in zip(names, labels, strict=True):
            points = [
                (r["progress"], float(np.mean(r["layers"][name])))
                for r in run.monitors["firing_rate"]
                if name in r["layers"]
            ]
            if points:
                ax.plot(*zip(*points, strict=True), label=label)
        ax.set(ylabel="mean firing rate", title=f"{run.label}: over training")
        epoch_axis(ax, epochs)
        if len(names) <= 12:
            ax.legend(fontsize=7, title="layer")
    share_y(list(axes[1]))
    return fig, [r.label for r in runs]


def _values(entry, field: str):
    """A layer's per-step list ``field`` of a record (``grad_reach`` entries are the list)."""
    return entry if isinstance(entry, list) else entry.get(field)


def _traces(runs, epochs: int, monitor: str, fields: dict, ylabel: str, title: str, ylim=None):
    """Per layer, one line per (run, step, field) over training; ``fields``: key -> linestyle."""

    def series(run, name, field):
        return [
            (r["progress"], _values(r["layers"][name], field))
            for r in run.monitors.get(monitor, [])
            if name in r["layers"] and _values(r["layers"][name], field) is not None
        ]

    names = [
        n
        for n in layer_names(runs, monitor)
        if any(series(run, n, field) for run in runs for field in fields)
    ]
    if not names:
        return None
    shown = set()
    nrows, ncols = grid_shape(len(names))
    fig, axes = figure(nrows, ncols)
    labels = layer_labels(runs, monitor, names)
    for ax, name, layer in zip(axes.flat, names, labels, strict=False):
        for i, run in enumerate(runs):
            for field, style in fields.items():
                points = series(run, name, field)
                if points:
                    shown.add(run.label)
                steps = max((len(v) for _, v in points), default=0)
                for t in range(steps):
                    xs = [p for p, v in points if t < len(v)]
                    ys = [v[t] for _, v in points if t < len(v)]
                    label = f"{run.label} t={t}" if field == next(iter(fields)) else None
                    ax.plot(xs, ys, style, color=shade(i, t, steps), label=label)
        ax.set(ylabel=ylabel, title=f"layer {layer}")
        epoch_axis(ax, epochs)
        if ylim is not None:
            ax.set_ylim(*ylim)
    share_y(list(axes.flat[: len(names)]))
    hide_unused(axes, len(names))
    axes.flat[0].legend(fontsize=7, ncols=len(runs))
    fig.suptitle(title)
    return fig, [r.label for r in runs if r.label in shown]


def _group_rate(runs, epochs: int):
    runs = [r for r in runs if "group_rate" in r.monitors]
    if not runs:
        return None
    names = layer_names(runs, "group_rate")
    labels = layer_labels(runs, "group_rate", names)
    fig, axes = figure(len(names), len(runs), width=5.0, height=3.4)
    panels = {}  # (row, column) -> ([G, T] rates of the last epoch, title)
    for col, run in enumerate(runs):
        last = of_last_epoch(run.monitors["group_rate"])
        for row, (name, layer) in enumerate(zip(names, labels, strict=True)):
            entries = [r["layers"][name] for r in last if name in r["layers"]]
            if entries:
                grid = "x".join(map(str, entries[0]["groups"]))
                title = f"{run.label}: layer {layer}, {grid} {entries[0]['window']}"
                rates = np.mean([np.array(e["rate"]) for e in entries], axis=0).T
                panels[row, col] = (rates, title)
    vmax = max(float(rates.max()) for rates, _ in panels.values()) or 1.0
    for (row, col), ax in np.ndenumerate(axes):
        if (row, col) not in panels:
            ax.set_visible(False)
            continue
        rates, title = panels[row, col]
        groups = [f"g{g}" for g in range(rates.shape[0])]
        heatmap(fig, ax, rates, groups, title, vmax, "firing rate")
    return fig, [r.label for r in runs]


def _curriculum(runs, epochs: int):
    runs = [r for r in runs if "curriculum" in r.monitors]
    if not runs:
        return None
    fig, axes = figure(1, len(runs) + 2)
    for col, run in enumerate(runs):
        ax = axes[0, col]
        records = run.monitors["curriculum"]
        loss = np.concatenate([r["loss"] for r in records])
        sigma = np.concatenate([r["sigma"] for r in records])
        epoch = np.concatenate([[r["epoch"]] * len(r["loss"]) for r in records])
        points = ax.scatter(loss, sigma, c=epoch, s=6, cmap="viridis", vmin=1, vmax=epochs)
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set(
            xlabel=r"per-sample loss $\ell_i$",
            ylabel=r"confidence $\sigma^*_i$",
            title=f"{run.label}: weights vs loss",
        )
        fig.colorbar(points, ax=ax, label="epoch", ticks=MaxNLocator(integer=True))
    share_y(list(axes[0, : len(runs)]), x=True)
    share_ax, mean_ax = axes[0, -2], axes[0, -1]
    for i, run in enumerate(runs):
        records = run.monitors["curriculum"]
        progress = [r["progress"] for r in records]
        share = [np.nan if r["weight_easy"] is None else r["weight_easy"] for r in records]
        share_ax.plot(progress, share, color=f"C{i}", label=run.label)
        for key, style in (("mean_sigma_easy", "-"), ("mean_sigma_hard", "--")):
            values = [np.nan if r[key] is None else r[key] for r in records]
            label = f"{run.label} {key.rsplit('_', 1)[1]}"
            mean_ax.plot(progress, values, style, color=f"C{i}", label=label)
    share_ax.set(
        ylabel="share of total weight",
        ylim=(0, 1),
        title=r"weight on easy samples ($\ell_i < \tau$)",
    )
    mean_ax.set(ylabel=r"mean $\sigma^*$", title="easy vs hard samples")
    for ax in (share_ax, mean_ax):
        epoch_axis(ax, epochs)
    share_ax.legend(fontsize=7)
    mean_ax.legend(fontsize=7)
    return fig, [r.label for r in runs]


def per_epoch_class_rates(run) -> dict[int, dict]:
    """``{epoch: pooled per-class rates}`` of a run's curriculum records (sampled batches)."""
    records = run.monitors.get("curriculum", [])
    epochs = sorted({r["epoch"] for r in records})
    pooled = {e: summed_class_rates([r for r in records if r["epoch"] == e]) for e in epochs}
    return {e: rates for e, rates in pooled.items() if rates is not None}


def _class_lines(ax, epochs: list[int], rows: list[list], title: str, ylabel: str) -> None:
    """One line per class: ``rows[i][c]`` is class ``c``'s value at ``epochs[i]``."""
    values = np.array([[np.nan if v is None else v for v in row] for row in rows], float)
    for c in range(values.shape[1]):
        ax.plot(epochs, values[:, c], marker="o", markersize=3, color=f"C{c % 10}", label=str(c))
    ax.set(ylabel=ylabel, title=title)


def _classes(runs, epochs: int):
    panels = []
    for run in runs:
        split = held_out_split(run.metrics["epochs"][0])
        key = EVAL_KEYS[split][2]
        acc = [(r["epoch"], r[key]) for r in run.metrics["epochs"] if r.get(key)]
        weights = per_epoch_class_rates(run)
        if acc or weights:
            panels.append((run, split, acc, weights))
    if not panels:
        return None
    fig, axes = figure(len(panels), 2, width=5.0)
    for row, (run, split, acc, weights) in enumerate(panels):
        acc_ax, weight_ax = axes[row, 0], axes[row, 1]
        if acc:
            _class_lines(
                acc_ax,
                [e for e, _ in acc],
                [a for _, a in acc],
                f"{run.label}: {split} accuracy per class",
                f"{split} accuracy",
            )
            acc_ax.legend(fontsize=6, ncol=2, title="class", title_fontsize=6)
        if weights:
            _class_lines(
                weight_ax,
                list(weights),
                [w["weight_ratio"] for w in weights.values()],
                f"{run.label}: loss weight per class",
                "weight share / sample share",
            )
            weight_ax.axhline(WEIGHT_RATIO_MIN, color="red", linestyle="--", linewidth=0.8)
            weight_ax.axhline(1.0, color="grey", linestyle=":", linewidth=0.8)
        for ax in (acc_ax, weight_ax):
            epoch_axis(ax, epochs)
    for column in axes.T:
        share_y(list(column))
    return fig, [panel[0].label for panel in panels]


def figures(runs) -> dict:
    """``{file name: a function drawing it}`` for ``runs``."""
    epochs = last_epoch(runs)
    return {
        "training_curves.png": lambda: _training_curves(runs, epochs),
        "firing_rate.png": lambda: _firing_rate(runs, epochs),
        "thresholds.png": lambda: _traces(
            runs,
            epochs,
            "threshold",
            {"train": "-", "running": ":"},
            "threshold",
            "Thresholds per step: training value (solid), running value (dotted)",
        ),
        "sigma.png": lambda: _traces(
            runs,
            epochs,
            "threshold",
            {"sigma": "-", "width": "--"},
            r"$\sigma_t$ (solid), $a_t$ (dashed)",
            r"Membrane spread $\sigma_t = \mathrm{std}(h_t)$ and surrogate width $a_t$ per step",
        ),
        "grad_reach.png": lambda: _traces(
            runs,
            epochs,
            "grad_reach",
            {"reach": "-"},
            "fraction with non-zero surrogate gradient",
            "Gradient reach per step",
            ylim=(0, 1.02),
        ),
        "group_rate.png": lambda: _group_rate(runs, epochs),
        "curriculum.png": lambda: _curriculum(runs, epochs),
        "classes.png": lambda: _classes(runs, epochs),
    }


CAPTIONS = {  # file -> (heading, caption) in report.md
    "training_curves.png": (
        "Training curves",
        "Training loss; test (solid) and training (dotted) accuracy per epoch.",
    ),
    "firing_rate.png": (
        "Firing rate",
        "Spikes per neuron and time step for every spiking "
        "layer, averaged over the last epoch's sampled batches (top), and the "
        "mean over steps across training (bottom).",
    ),
    "thresholds.png": (
        "Thresholds",
        "Per layer and time step (darker: later step), the "
        "threshold used in training (solid) and the running threshold used in "
        "evaluation (dotted).",
    ),
    "sigma.png": (
        "Membrane spread and surrogate width",
        "Per layer and time step, the standard deviation sigma_t of the charged "
        "membrane (solid), which sets the adaptive threshold, and the width "
        "a_t = a_0 (1 + tanh(sigma_t - v_0)) of a dynamic surrogate (dashed). With the "
        "default a_0 = v_0 = 1, a_t = 1 + tanh(sigma_t - 1) differs from sigma_t by "
        "about (sigma_t - 1)^3 / 3: while sigma_t stays near 1 the two curves "
        "overlap (at sigma_t = 1.1, a_t = 1.0997), which is the rule at work, not "
        "one value recorded twice.",
    ),
    "grad_reach.png": (
        "Gradient reach",
        "Per layer and time step, the fraction of neurons "
        "whose surrogate gradient is non-zero (|h - V_th| inside the "
        "surrogate's support).",
    ),
    "group_rate.png": (
        "Firing rate per group",
        "Per grouped layer, spikes per neuron of "
        "every group (rows, row-major grid order) and time step, last epoch.",
    ),
    "curriculum.png": (
        "Curriculum weights",
        "Confidence sigma* against per-sample loss "
        "(colour: epoch; sigma* > 1 for easy samples), the share of the total "
        "weight carried by easy samples, and the mean sigma* of easy and hard "
        "samples over training.",
    ),
    "classes.png": (
        "Per class",
        "Per class and epoch, the test accuracy (left) and, under a curriculum "
        "loss, the class's share of the loss weight over its share of the samples "
        "(right; 1 = plain averaging, red dashed: the collapse line "
        f"{WEIGHT_RATIO_MIN:.2f}) on the sampled training batches.",
    ),
}
