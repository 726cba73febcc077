r"""``sj-ext report RUN [RUN_B]``: the figures of the papers, for your runs.

:func:`write_report` reads run folders (``metrics.json``, ``recipe.yaml`` and
the monitor records ``monitor/<name>.jsonl`` of :mod:`sj_ext.monitor`) and
writes PNG figures (matplotlib, Agg canvas) and one ``report.md`` showing
them. With two runs every figure overlays or sets side by side both (e.g. a
fixed against an adaptive threshold). A run without a monitor's records has
no such figure; only ``metrics.json`` (one finished epoch) is required.

Figures (:data:`FIGURES`):

* ``training_curves.png`` -- training loss; training and test accuracy per epoch;
* ``firing_rate.png`` -- heatmap of the firing rate :math:`r_t` per layer (rows)
  and time step (columns), averaged over the last epoch's sampled batches;
  the mean rate of every layer over training;
* ``thresholds.png`` -- per layer, the threshold of every step over training:
  the value used in training :math:`V_{th}(t)` (solid) and the running one
  :math:`\bar V_{th}[t]` (dotted);
* ``sigma.png`` -- per layer and step, :math:`\sigma_t = \mathrm{std}(h_t)`;
* ``grad_reach.png`` -- per layer and step, the fraction of neurons whose
  surrogate gradient is non-zero (:mod:`sj_ext.monitor`);
* ``group_rate.png`` -- per grouped layer, firing rate per group (rows) and
  step (columns), last epoch;
* ``curriculum.png`` -- confidence :math:`\sigma^*_i` against per-sample loss
  :math:`\ell_i` (colour: epoch); the share of the total weight on easy
  samples (:math:`\ell_i < \tau`); mean :math:`\sigma^*` of easy and hard samples;

and in ``report.md`` a table of operations and energy per inference (SNN
beside the same network as an ANN, :mod:`sj_ext.energy`) from the last
epoch's ``energy`` record. A missing or empty folder, or a missing,
truncated or empty ``metrics.json``, raises :class:`ReportError` naming the file.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .monitor import MonitorFileError, read_records

__all__ = ["FIGURES", "ReportError", "RunRecords", "load_run", "write_report"]

FIGURES = (
    "training_curves.png",
    "firing_rate.png",
    "thresholds.png",
    "sigma.png",
    "grad_reach.png",
    "group_rate.png",
    "curriculum.png",
)
_LAYERED = {"epoch", "progress", "layers"}
_KEYS = {  # what the figures read from each monitor's records
    "firing_rate": _LAYERED,
    "threshold": _LAYERED,
    "grad_reach": _LAYERED,
    "group_rate": _LAYERED,
    "curriculum": {
        "epoch",
        "progress",
        "loss",
        "sigma",
        "weight_easy",
        "mean_sigma_easy",
        "mean_sigma_hard",
    },
    "energy": {"epoch", "samples", "T", "snn", "ann", "ann_over_snn", "layers", "assumptions"},
}
_SHADES = ("Blues", "Oranges")
_COLUMNS = 4  # subplots per row of the per-layer figures


class ReportError(RuntimeError):
    """A run folder that cannot be reported on (names the folder or file)."""


@dataclass
class RunRecords:
    """One run folder, read: ``metrics.json``, ``recipe.yaml`` (or None) and monitor records."""

    path: Path
    label: str
    metrics: dict
    recipe: dict | None
    monitors: dict[str, list[dict]]


def load_run(path: str | Path, label: str | None = None) -> RunRecords:
    """Read a run folder written by ``sj-ext train``.

    :raises ReportError: the folder is missing, ``metrics.json`` is missing,
        truncated, not valid JSON or holds no finished epoch, or a monitor file
        has a corrupt line or record (a partial last line, from a crash, is skipped)
    """
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: no such run folder")
    metrics_path = path / "metrics.json"
    if not metrics_path.is_file():
        raise ReportError(
            f"{path}: not a run folder, or no epoch has finished yet ({metrics_path} is missing)"
        )
    try:
        metrics = json.loads(metrics_path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{metrics_path}: truncated or not valid JSON ({e})") from e
    epochs = metrics.get("epochs") if isinstance(metrics, dict) else None
    if not isinstance(epochs, list) or not epochs:
        raise ReportError(f"{metrics_path}: holds no finished epoch")
    needed = {"epoch", "train_loss", "train_acc", "test_acc"}
    for row in epochs:
        if not isinstance(row, dict) or not needed <= row.keys():
            raise ReportError(f"{metrics_path}: an epoch record lacks {sorted(needed)}: {row!r}")
    recipe_path = path / "recipe.yaml"
    recipe = yaml.safe_load(recipe_path.read_text()) if recipe_path.is_file() else None
    monitors = {}
    for file in sorted((path / "monitor").glob("*.jsonl")):
        try:
            records = read_records(file)
        except MonitorFileError as e:
            raise ReportError(str(e)) from e
        for number, record in enumerate(records, 1):
            missing = _KEYS.get(file.stem, set()) - record.keys()
            if missing:
                raise ReportError(f"{file}: record {number} lacks {sorted(missing)}")
        if records:
            monitors[file.stem] = records
    return RunRecords(path, label or path.name, metrics, recipe, monitors)


# ------------------------------------------------------------------------------------ helpers
def _last_epoch(records: list[dict]) -> list[dict]:
    last = max(r["epoch"] for r in records)
    return [r for r in records if r["epoch"] == last]


def _layer_names(runs: list[RunRecords], monitor: str) -> list[str]:
    names = []
    for run in runs:
        for record in run.monitors.get(monitor, []):
            names += [n for n in record["layers"] if n not in names]
    return names


def _mean_rows(rows: list[list[float]]) -> np.ndarray:
    """Mean of equal-or-unequal-length rows (NaN-padded)."""
    width = max(len(r) for r in rows)
    padded = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        padded[i, : len(row)] = row
    return np.nanmean(padded, axis=0)


def _figure(nrows: int, ncols: int, width: float = 4.2, height: float = 3.2):
    fig = Figure(figsize=(max(width * ncols, 6.4), height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _grid(count: int) -> tuple[int, int]:
    cols = min(count, _COLUMNS)
    return -(-count // cols), cols


def _hide_unused(axes, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


def _shade(run_index: int, t: int, steps: int):
    return colormaps[_SHADES[run_index % 2]](0.45 + 0.55 * (t + 1) / max(steps, 1))


def _heatmap(fig, ax, matrix: np.ndarray, rows: list[str], title: str, vmax: float, label: str):
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


# ------------------------------------------------------------------------------------ figures
# Each returns None (no run has the records) or (figure, labels of the runs it shows).


def _training_curves(runs):
    fig, axes = _figure(1, 2, width=5.5)
    loss_ax, acc_ax = axes[0]
    for i, run in enumerate(runs):
        rows = run.metrics["epochs"]
        epochs = [r["epoch"] for r in rows]
        color = f"C{i}"
        loss_ax.plot(epochs, [r["train_loss"] for r in rows], color=color, label=run.label)
        acc_ax.plot(epochs, [r["test_acc"] for r in rows], color=color, label=f"{run.label} test")
        acc_ax.plot(
            epochs, [r["train_acc"] for r in rows], ":", color=color, label=f"{run.label} train"
        )
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
            mean = _mean_rows(row)
            matrix[i, : len(mean)] = mean
    return matrix


def _firing_rate(runs):
    runs = [r for r in runs if "firing_rate" in r.monitors]
    if not runs:
        return None
    names = _layer_names(runs, "firing_rate")
    fig, axes = _figure(2, len(runs), width=5.0, height=0.45 * len(names) + 2.6)
    lasts = [_last_epoch(run.monitors["firing_rate"]) for run in runs]
    matrices = [_rate_matrix(last, names) for last in lasts]
    vmax = max(float(np.nanmax(m)) if np.isfinite(m).any() else 0.0 for m in matrices) or 1.0
    for col, (run, last, matrix) in enumerate(zip(runs, lasts, matrices, strict=True)):
        title = f"{run.label}: firing rate, epoch {last[0]['epoch']}"
        _heatmap(fig, axes[0, col], matrix, names, title, vmax, "spikes per neuron per step")
        ax = axes[1, col]
        for name in names:
            points = [
                (r["progress"], float(np.mean(r["layers"][name])))
                for r in run.monitors["firing_rate"]
                if name in r["layers"]
            ]
            if points:
                ax.plot(*zip(*points, strict=True), label=name)
        ax.set(xlabel="epoch", ylabel="mean firing rate", title=f"{run.label}: over training")
        if len(names) <= 12:
            ax.legend(fontsize=7, title="layer")
    return fig, [r.label for r in runs]


def _values(entry, field: str):
    """A layer's per-step list ``field`` of a record (``grad_reach`` entries are the list)."""
    return entry if isinstance(entry, list) else entry.get(field)


def _traces(runs, monitor: str, fields: dict, ylabel: str, title: str, ylim=None):
    """Per layer, one line per (run, step, field) over training; ``fields``: key -> linestyle."""

    def series(run, name, field):
        return [
            (r["progress"], _values(r["layers"][name], field))
            for r in run.monitors.get(monitor, [])
            if name in r["layers"] and _values(r["layers"][name], field) is not None
        ]

    names = [
        n
        for n in _layer_names(runs, monitor)
        if any(series(run, n, field) for run in runs for field in fields)
    ]
    if not names:
        return None
    shown = set()
    nrows, ncols = _grid(len(names))
    fig, axes = _figure(nrows, ncols)
    for ax, name in zip(axes.flat, names, strict=False):
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
                    ax.plot(xs, ys, style, color=_shade(i, t, steps), label=label)
        ax.set(xlabel="epoch", ylabel=ylabel, title=f"layer {name}")
        if ylim is not None:
            ax.set_ylim(*ylim)
    _hide_unused(axes, len(names))
    axes.flat[0].legend(fontsize=7, ncols=len(runs))
    fig.suptitle(title)
    return fig, [r.label for r in runs if r.label in shown]


def _group_rate(runs):
    runs = [r for r in runs if "group_rate" in r.monitors]
    if not runs:
        return None
    names = _layer_names(runs, "group_rate")
    fig, axes = _figure(len(names), len(runs), width=5.0, height=3.4)
    for col, run in enumerate(runs):
        last = _last_epoch(run.monitors["group_rate"])
        for row, name in enumerate(names):
            ax = axes[row, col]
            entries = [r["layers"][name] for r in last if name in r["layers"]]
            if not entries:
                ax.set_visible(False)
                continue
            matrix = np.mean([np.array(e["rate"]) for e in entries], axis=0).T  # [G, T]
            grid = "x".join(map(str, entries[0]["groups"]))
            rows = [f"g{g}" for g in range(matrix.shape[0])]
            title = f"{run.label}: layer {name} ({grid} {entries[0]['window']})"
            _heatmap(fig, ax, matrix, rows, title, float(matrix.max()) or 1.0, "firing rate")
    return fig, [r.label for r in runs]


def _curriculum(runs):
    runs = [r for r in runs if "curriculum" in r.monitors]
    if not runs:
        return None
    fig, axes = _figure(1, len(runs) + 2)
    last_epoch = max(r["epoch"] for run in runs for r in run.monitors["curriculum"])
    for col, run in enumerate(runs):
        ax = axes[0, col]
        records = run.monitors["curriculum"]
        loss = np.concatenate([r["loss"] for r in records])
        sigma = np.concatenate([r["sigma"] for r in records])
        epoch = np.concatenate([[r["epoch"]] * len(r["loss"]) for r in records])
        points = ax.scatter(loss, sigma, c=epoch, s=6, cmap="viridis", vmin=1, vmax=last_epoch)
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set(
            xlabel=r"per-sample loss $\ell_i$",
            ylabel=r"confidence $\sigma^*_i$",
            title=f"{run.label}: weights vs loss",
        )
        fig.colorbar(points, ax=ax, label="epoch", ticks=MaxNLocator(integer=True))
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
        xlabel="epoch",
        ylabel="share of total weight",
        ylim=(0, 1),
        title=r"weight on easy samples ($\ell_i < \tau$)",
    )
    mean_ax.set(xlabel="epoch", ylabel=r"mean $\sigma^*$", title="easy vs hard samples")
    share_ax.legend(fontsize=7)
    mean_ax.legend(fontsize=7)
    return fig, [r.label for r in runs]


def _figures(runs) -> dict:
    return {
        "training_curves.png": lambda: _training_curves(runs),
        "firing_rate.png": lambda: _firing_rate(runs),
        "thresholds.png": lambda: _traces(
            runs,
            "threshold",
            {"train": "-", "running": ":"},
            "threshold",
            "Thresholds per step: training value (solid), running value (dotted)",
        ),
        "sigma.png": lambda: _traces(
            runs,
            "threshold",
            {"sigma": "-"},
            r"$\sigma_t$",
            r"Membrane spread $\sigma_t = \mathrm{std}(h_t)$ per step",
        ),
        "grad_reach.png": lambda: _traces(
            runs,
            "grad_reach",
            {"reach": "-"},
            "fraction with non-zero surrogate gradient",
            "Gradient reach per step",
            ylim=(0, 1.02),
        ),
        "group_rate.png": lambda: _group_rate(runs),
        "curriculum.png": lambda: _curriculum(runs),
    }


# ----------------------------------------------------------------------------------- markdown
_CAPTIONS = {
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
        "Membrane spread",
        "Per layer and time step, the standard deviation "
        "sigma_t of the charged membrane, which sets the adaptive threshold and "
        "the dynamic surrogate's width.",
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
}


def _fmt(value) -> str:
    """Counts >= 1000 with thousands separators, other numbers to 4 significant digits."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def _summary(runs) -> list[str]:
    lines = [
        "| run | folder | model | neuron | loss | T | epochs | best test acc | final test acc |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        r = run.recipe or {}

        def name(section, r=r):
            return (r.get(section) or {}).get("name", "–")

        T = (r.get("data") or {}).get("T", "–")
        m = run.metrics
        lines.append(
            f"| {run.label} | `{run.path}` | {name('model')} | {name('neuron')} | {name('loss')} "
            f"| {T} | {len(m['epochs'])} | {_fmt(m.get('best_test_acc'))} "
            f"| {_fmt(m.get('final_test_acc'))} |"
        )
    return lines


def _energy(runs) -> list[str]:
    runs = [r for r in runs if "energy" in r.monitors]
    if not runs:
        return []
    records = [run.monitors["energy"][-1] for run in runs]
    header = "| per inference | " + " | ".join(
        f"{run.label} (epoch {rec['epoch']})" for run, rec in zip(runs, records, strict=True)
    )
    rows = [
        ("SNN MAC", lambda e: e["snn"]["mac"]),
        ("SNN AC (synaptic operations)", lambda e: e["snn"]["ac"]),
        ("SNN energy (µJ)", lambda e: e["snn"]["energy_pj"] / 1e6),
        ("ANN MAC (same network, ReLU, one pass)", lambda e: e["ann"]["mac"]),
        ("ANN energy (µJ)", lambda e: e["ann"]["energy_pj"] / 1e6),
        ("ANN / SNN energy", lambda e: e["ann_over_snn"]),
        ("time steps T; samples counted", lambda e: f"{e['T']}; {e['samples']}"),
    ]
    lines = ["## Operations and energy per inference", "", header + " |"]
    lines.append("|---" * (len(runs) + 1) + "|")
    for label, get in rows:
        lines.append(f"| {label} | " + " | ".join(_fmt(get(e)) for e in records) + " |")
    for run, rec in zip(runs, records, strict=True):
        lines += ["", f"Per layer, {run.label}:", "", "| layer | SNN MAC | SNN AC | ANN MAC |"]
        lines.append("|---|---|---|---|")
        for name, c in rec["layers"].items():
            lines.append(
                f"| {name} | {_fmt(c['snn_mac'])} | {_fmt(c['snn_ac'])} | {_fmt(c['ann_mac'])} |"
            )
    lines += ["", "Assumptions:", ""] + [f"- {a}" for a in records[0]["assumptions"]]
    return lines


def _labels(paths: list[Path]) -> list[str]:
    labels = [p.name for p in paths]
    if len(set(labels)) < len(labels):
        labels = [f"{p.parent.name}/{p.name}" for p in paths]
    if len(set(labels)) < len(labels):
        labels = [str(p) for p in paths]
    return labels


def write_report(runs, out_dir: str | Path | None = None) -> Path:
    """Write the figures and ``report.md`` for one run folder, or two (overlaid).

    :param runs: one or two run folders
    :param out_dir: default ``RUN/report`` (one run), ``RUN_A/report_vs_<RUN_B name>`` (two)
    :return: the path of ``report.md``
    :raises ReportError: see :func:`load_run`
    """
    paths = [Path(r) for r in runs]
    if not 1 <= len(paths) <= 2:
        raise ReportError(f"report takes one or two run folders, got {len(paths)}")
    loaded = [load_run(p, label) for p, label in zip(paths, _labels(paths), strict=True)]
    if out_dir is None:
        out_dir = paths[0] / ("report" if len(paths) == 1 else f"report_vs_{paths[1].name}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = " vs ".join(r.label for r in loaded)
    lines = [f"# sj-ext report: {title}", "", *_summary(loaded), ""]
    for file, make in _figures(loaded).items():
        made = make()
        if made is None:
            continue
        fig, shown = made
        fig.savefig(out_dir / file, dpi=100)
        heading, caption = _CAPTIONS[file]
        missing = [r.label for r in loaded if r.label not in shown]
        note = f" (no records in {', '.join(missing)})" if missing else ""
        lines += [f"## {heading}", "", caption + note, "", f"![{heading}]({file})", ""]
    lines += _energy(loaded)
    report = out_dir / "report.md"
    report.write_text("\n".join(lines).rstrip() + "\n")
    return report
