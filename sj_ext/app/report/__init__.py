r"""``sj-ext report RUN [RUN_B]``: the figures of the papers, for your runs.

:func:`write_report` reads run folders (``metrics.json``, ``recipe.yaml`` and
the monitor records ``monitor/<name>.jsonl`` of :mod:`sj_ext.app.monitor`) and
writes PNG figures (matplotlib, Agg canvas) and one ``report.md`` showing
them. With two runs every figure overlays or sets side by side both (e.g. a
fixed against an adaptive threshold). A run without a monitor's records has
no such figure; only ``metrics.json`` (one finished epoch) is required.

Figures (:data:`FIGURES`):

* ``training_curves.png`` -- training loss; training and held-out accuracy per epoch
  (the validation split's when the run has one, else the test set's);
* ``firing_rate.png`` -- heatmap of the firing rate :math:`r_t` per layer (rows)
  and time step (columns), averaged over the last epoch's sampled batches;
  the mean rate of every layer over training;
* ``thresholds.png`` -- per layer, the threshold of every step over training:
  the value used in training :math:`V_{th}(t)` (solid) and the running one
  :math:`\bar V_{th}[t]` (dotted);
* ``sigma.png`` -- per layer and step, :math:`\sigma_t = \mathrm{std}(h_t)` and the
  dynamic surrogate's width :math:`a_t = a_0 (1 + \tanh(\sigma_t - v_0))`, which
  with the default :math:`a_0 = v_0 = 1` all but equals :math:`\sigma_t` near 1
  (the caption says so);
* ``grad_reach.png`` -- per layer and step, the fraction of neurons whose
  surrogate gradient is non-zero (:mod:`sj_ext.app.monitor`);
* ``group_rate.png`` -- per grouped layer, firing rate per group (rows) and
  step (columns), last epoch;
* ``curriculum.png`` -- confidence :math:`\sigma^*_i` against per-sample loss
  :math:`\ell_i` (colour: epoch); the share of the total weight on easy
  samples (:math:`\ell_i < \tau`); mean :math:`\sigma^*` of easy and hard samples;

and in ``report.md`` a table of operations and energy per inference (SNN
beside the same network as an ANN, :mod:`sj_ext.app.energy`) from the last
epoch's ``energy`` record. A missing or empty folder, a missing, truncated,
empty or wrongly typed ``metrics.json``, or a damaged ``recipe.yaml`` raises
:class:`ReportError` naming the file; a damaged monitor line or record is
skipped with a warning naming file and line. The figures are drawn by
:mod:`sj_ext.app.report.figures`: layers are named by their module path in the net
(``layer2.0.residual.2 (AdaptiveThresholdLIF)``), and panels that compare one
quantity across layers or runs share their y range.
"""

import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..checks import DICT, INT, LIST, NUMBER, OPT_NUMBER, Field, check
from ..class_health import accuracy_warnings, weight_warnings
from ..runfiles import (
    ACCURACY_NAMES,
    ENVIRONMENT_KEYS,
    EVAL_KEYS,
    MonitorFileWarning,
    held_out_split,
    read_records,
    table_number,
)
from ..safe_yaml import YamlInputError, read_text
from ..safe_yaml import load as load_yaml
from .figures import CAPTIONS, FIGURES, figures, per_epoch_class_rates

__all__ = ["FIGURES", "ReportError", "RunRecords", "command", "load_run", "write_report"]


_NUMBER = Field(NUMBER)
_OPT_NUMBER = Field(OPT_NUMBER, None)
_LAYERED = {"epoch": Field(INT), "progress": _NUMBER, "layers": Field(DICT)}
#: what the figures read from each monitor's records, and what each must be
#: (:mod:`sj_ext.app.checks` specs; a record's other keys are kept unread)
RECORDS = {
    "firing_rate": _LAYERED,
    "threshold": _LAYERED,
    "grad_reach": _LAYERED,
    "group_rate": _LAYERED,
    "curriculum": {
        "epoch": Field(INT),
        "progress": _NUMBER,
        "loss": Field(LIST),
        "sigma": Field(LIST),
        "weight_easy": _OPT_NUMBER,
        "mean_sigma_easy": _OPT_NUMBER,
        "mean_sigma_hard": _OPT_NUMBER,
    },
    "energy": {
        **{key: Field(DICT) for key in ("snn", "ann", "layers")},
        **{key: _NUMBER for key in ("epoch", "samples", "T", "ann_over_snn")},
        "assumptions": Field(LIST),
    },
}
#: what the figures read from an epoch record of metrics.json
EPOCH = {"epoch": Field(INT), "train_loss": _NUMBER, "train_acc": _NUMBER}
#: the summary keys of metrics.json
METRICS = {key: _OPT_NUMBER for key in ("best_test_acc", "best_val_acc", "final_test_acc")}


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
    environment: dict | None = None  # environment.json (runs of earlier versions lack it)


def _problem(record, spec: dict) -> str | None:
    """What is wrong with ``record`` against ``spec`` (its other keys allowed), or None."""
    problems = check(spec, record, closed=False)[1]
    return "; ".join(problems) if problems else None


def _read_metrics(path: Path) -> dict:
    if not path.is_file():
        raise ReportError(
            f"{path.parent}: not a run folder, or no epoch has finished yet ({path} is missing)"
        )
    try:
        metrics = json.loads(path.read_text(errors="replace"))
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: truncated or not valid JSON ({e})") from e
    epochs = metrics.get("epochs") if isinstance(metrics, dict) else None
    if not isinstance(epochs, list) or not epochs:
        raise ReportError(f"{path}: holds no finished epoch")
    for number, row in enumerate(epochs, 1):
        problem = _problem(row, EPOCH)
        if not problem:
            problem = _problem(row, {EVAL_KEYS[held_out_split(row)][0]: _NUMBER})
        if problem:
            raise ReportError(f"{path}: epoch record {number}: {problem}")
    problem = _problem(metrics, METRICS)
    if problem:
        raise ReportError(f"{path}: {problem}")
    return metrics


def _read_recipe(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        recipe = load_yaml(read_text(path))
    except (OSError, YamlInputError, yaml.YAMLError) as e:
        raise ReportError(f"{path}: cannot read the run's recipe ({e})") from e
    if not isinstance(recipe, dict):
        raise ReportError(f"{path}: not a recipe (a {type(recipe).__name__}, not a mapping)")
    return recipe


def _read_monitor(file: Path) -> list[dict]:
    """The usable records of one monitor file; damaged lines and records are skipped, warned."""
    try:
        records = read_records(file)
    except OSError as e:
        raise ReportError(f"{file}: cannot read it ({e.strerror or e})") from e
    usable = []
    for number, record in enumerate(records, 1):
        problem = _problem(record, RECORDS.get(file.stem, {}))
        if problem:
            warnings.warn(f"{file}: record {number}: {problem}; skipped", MonitorFileWarning, 2)
        else:
            usable.append(record)
    return usable


def load_run(path: str | Path, label: str | None = None) -> RunRecords:
    """Read a run folder written by ``sj-ext train``.

    Damaged monitor lines or records are skipped with a
    :class:`~sj_ext.app.monitor.MonitorFileWarning` naming file and line (or record).

    :raises ReportError: the folder is missing; ``metrics.json`` is missing,
        truncated, not valid JSON, holds no finished epoch or a wrongly typed
        value; ``recipe.yaml`` is there but not a readable YAML mapping
    """
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: no such run folder")
    metrics = _read_metrics(path / "metrics.json")
    recipe = _read_recipe(path / "recipe.yaml")
    monitors = {}
    for file in sorted((path / "monitor").glob("*.jsonl")):
        records = _read_monitor(file)
        if records:
            monitors[file.stem] = records
    return RunRecords(path, label or path.name, metrics, recipe, monitors, _read_environment(path))


def _read_environment(path: Path) -> dict | None:
    """``environment.json`` of a run folder; None when missing or unreadable (warned)."""
    file = path / "environment.json"
    if not file.is_file():
        return None
    try:
        env = json.loads(file.read_text(errors="replace"))
    except json.JSONDecodeError as e:
        warnings.warn(f"{file}: not valid JSON ({e}); not shown", MonitorFileWarning, 2)
        return None
    return env if isinstance(env, dict) else None


def _environment(runs) -> list[str]:
    """Where each run ran (its start; and its last resume when it was resumed elsewhere)."""
    shown = [r for r in runs if r.environment is not None]
    if not shown:
        return []
    lines = ["## Environment", "", "| | " + " | ".join(r.label for r in shown) + " |"]
    lines.append("|---" * (len(shown) + 1) + "|")
    for key in (*ENVIRONMENT_KEYS, "dirty", "threads", "deterministic_algorithms"):
        lines.append(
            f"| {key} | " + " | ".join(table_number(r.environment.get(key)) for r in shown) + " |"
        )
    resumed = [
        f"{r.label} was resumed {len(r.environment['resumed'])} time(s), last under "
        + ", ".join(f"{k} {r.environment['resumed'][-1].get(k)}" for k in ENVIRONMENT_KEYS)
        for r in shown
        if r.environment.get("resumed")
    ]
    return [*lines, "", *[f"- {line}" for line in resumed], ""]


def _section(recipe: dict, key: str) -> dict:
    section = recipe.get(key)
    return section if isinstance(section, dict) else {}


def _best(metrics: dict) -> str:
    """The best accuracy of the split every epoch evaluated; ``(val)``: a validation split."""
    if metrics.get("best_val_acc") is not None:
        return f"{table_number(metrics['best_val_acc'])} (val)"
    return table_number(metrics.get("best_test_acc"))


def _summary(runs) -> list[str]:
    lines = [
        "| run | folder | model | neuron | loss | T | epochs | best held-out acc "
        "| final test acc |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        r = run.recipe or {}

        def name(section, r=r):
            return _section(r, section).get("name", "–")

        T = _section(r, "data").get("T", "–")
        m = run.metrics
        lines.append(
            f"| {run.label} | `{run.path}` | {name('model')} | {name('neuron')} | {name('loss')} "
            f"| {T} | {len(m['epochs'])} | {_best(m)} "
            f"| {table_number(m.get('final_test_acc'))} |"
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
        lines.append(f"| {label} | " + " | ".join(table_number(get(e)) for e in records) + " |")
    for run, rec in zip(runs, records, strict=True):
        lines += ["", f"Per layer, {run.label}:", "", "| layer | SNN MAC | SNN AC | ANN MAC |"]
        lines.append("|---|---|---|---|")
        for name, c in rec["layers"].items():
            cells = (table_number(c[key]) for key in ("snn_mac", "snn_ac", "ann_mac"))
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Assumptions:", ""] + [f"- {a}" for a in records[0]["assumptions"]]
    return lines


def _class_warnings(runs) -> list[str]:
    """The collapse warnings (:mod:`sj_ext.app.class_health`) of each run's last epoch."""
    found = []
    for run in runs:
        last = run.metrics["epochs"][-1]
        where = f"{run.label}, epoch {last['epoch']}: "
        split = "test" if "per_class_acc" in last else held_out_split(last)
        found += accuracy_warnings(last.get(EVAL_KEYS[split][2]), where, ACCURACY_NAMES[split])
        weights = per_epoch_class_rates(run)
        if weights:
            epoch = max(weights)
            found += weight_warnings(
                weights[epoch]["weight_ratio"], f"{run.label}, epoch {epoch} (training): "
            )
    if not found:
        return []
    return ["## Warnings", "", *[f"- **{w}**" for w in found], ""]


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
    lines = [f"# sj-ext report: {title}", "", *_summary(loaded), "", *_class_warnings(loaded)]
    for file, make in figures(loaded).items():
        made = make()
        if made is None:
            continue
        fig, shown = made
        fig.savefig(out_dir / file, dpi=100)
        heading, caption = CAPTIONS[file]
        missing = [r.label for r in loaded if r.label not in shown]
        note = f" (no records in {', '.join(missing)})" if missing else ""
        lines += [f"## {heading}", "", caption + note, "", f"![{heading}]({file})", ""]
    lines += _energy(loaded)
    lines += ["", *_environment(loaded)]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines).rstrip() + "\n")
    return report


def command(args) -> int:
    """``sj-ext report RUN_DIR [RUN_DIR_B]``: reads run folders only (no torch, no recipe
    registries); exit 1, with the reason in one line, for a folder it cannot report on."""
    try:
        report = write_report(args.runs, args.out)
    except (FileNotFoundError, RuntimeError) as err:
        print(f"sj-ext report: {err}", file=sys.stderr)
        return 1
    print(f"wrote {report} and {len(list(report.parent.glob('*.png')))} figure(s)")
    return 0
