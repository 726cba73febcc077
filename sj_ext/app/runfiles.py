"""The files of a run folder, torch-free: atomic writes and append-only JSON-lines records.

A run folder (``sj-ext train --out OUT``) holds ``metrics.json`` and ``recipe.yaml``,
written whole by :func:`write_json` / :func:`atomic_write` (a crash leaves the old
file or the new one, never a mix), and ``monitor/<name>.jsonl`` for each name of
:data:`MONITORS`: one JSON object per line, appended by :func:`append_record`
(flushed and fsynced), read back by :func:`read_records` and cut back to the
completed epochs by :func:`keep_epochs`.

Everything here is the standard library: the report, the sweep summary and any
tool reading run folders import it without loading torch.
"""

import json
import math
import os
import statistics
import warnings
from pathlib import Path

__all__ = [
    "is_number",
    "monitor_summary",
    "percent",
    "table_number",
    "evaluated_split",
    "ACCURACY_NAMES",
    "ENVIRONMENT_KEYS",
    "EVAL_KEYS",
    "best_accuracy",
    "MONITORS",
    "held_out_split",
    "MonitorFileWarning",
    "atomic_write",
    "write_json",
    "write_temp",
    "replace",
    "append_record",
    "read_records",
    "keep_epochs",
]

#: the monitors a run records, each into ``OUT/monitor/<name>.jsonl`` (:mod:`sj_ext.app.monitor`)
MONITORS = ("firing_rate", "threshold", "grad_reach", "group_rate", "curriculum", "energy")


#: the keys of an epoch record (``metrics.json``) that hold an evaluation of each split:
#: accuracy, samples, accuracy per class. Every epoch evaluates the validation split
#: when the run has one (``data.val_samples``), else the test set; a validation run
#: evaluates the test set once, after its last epoch.
def is_number(value, finite: bool = False) -> bool:
    """An int or float (not a bool); with ``finite``, neither NaN nor infinite."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and (not finite or math.isfinite(value))


def table_number(value, digits: int = 4, grouped_from: float = 1000) -> str:
    """A number as the tables show it: ``–`` for None; a float of magnitude ``grouped_from``
    or more with thousands separators (``12,345``), another float to ``digits`` significant
    digits; an int (or anything else) as it is."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= grouped_from else f"{value:.{digits}g}"
    return str(value)


def percent(mean: float | None, sd: float | None = None) -> str:
    """A fraction (and its standard deviation) in percent for a table: ``97.50 ± 0.15``;
    ``–`` for no value."""
    if mean is None:
        return "–"
    return f"{100 * mean:.2f}" + ("" if sd is None else f" ± {100 * sd:.2f}")


#: the fields of ``environment.json`` (:mod:`sj_ext.app.engine.environment`) that a resume
#: compares and the report shows: a change in any of them can change the numbers
ENVIRONMENT_KEYS = ("python", "torch", "spikingjelly", "sj_ext", "commit", "cuda", "cupy", "device")

EVAL_KEYS = {
    "test": ("test_acc", "test_samples", "per_class_acc"),
    "val": ("val_acc", "val_samples", "val_per_class_acc"),
}
#: each split's accuracy in words, for warnings and labels
ACCURACY_NAMES = {"test": "test accuracy", "val": "validation accuracy"}


def best_accuracy(records: list[dict], split: str) -> float | None:
    """The best accuracy on ``split`` over the epoch records (None before the first epoch)."""
    return max((r[EVAL_KEYS[split][0]] for r in records), default=None)


def evaluated_split(has_validation: bool) -> str:
    """The split every epoch of a run evaluates: ``'val'`` when the run has a validation
    split (``data.val_samples``), else ``'test'``. The one place that decides it."""
    return "val" if has_validation else "test"


def held_out_split(record: dict) -> str:
    """:func:`evaluated_split` of the run an epoch record or ``metrics.json`` comes from."""
    return evaluated_split(EVAL_KEYS["val"][0] in record or record.get("best_val_acc") is not None)


class MonitorFileWarning(UserWarning):
    """A line of a monitor file that is skipped (names the file and the line)."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temp(path: Path, write) -> Path:
    """``write(file)`` into ``.NAME.tmp.<pid>`` beside ``path``, fsynced; removed on failure."""
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def replace(tmp: Path, path: Path) -> None:
    """Rename ``tmp`` over ``path`` and fsync the directory (the rename is durable)."""
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write(path: Path, write) -> None:
    """Write ``path`` through ``write(file)`` so that a crash leaves the old file or the new one.

    Write a temporary file in the same directory, flush, fsync, rename it over
    ``path``, then fsync the directory. A failed write (disk full) removes the
    temporary file and leaves ``path`` untouched.
    """
    path = Path(path)
    replace(write_temp(path, write), path)


def write_json(path: Path, obj) -> None:
    """``obj`` as indented JSON into ``path``, atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def _line(record: dict) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"


def append_record(path: Path, record: dict) -> None:
    """Append ``record`` as one JSON line to ``path``, flushed and fsynced (folder created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(_line(record))
        f.flush()
        os.fsync(f.fileno())


def read_records(path: str | Path) -> list[dict]:
    """The records of one monitor file (JSON lines).

    A last line without its newline (a crash mid-append) is ignored silently;
    any other line that is not a JSON object with an integer ``epoch`` is
    skipped with a :class:`MonitorFileWarning` naming the file and the line
    (diagnostics never stop a run or a report).
    """
    path = Path(path)
    lines = path.read_text(errors="replace").split("\n")
    if lines and lines[-1]:  # the partial line of an interrupted append
        lines = lines[:-1]
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        problem, record = _parse_record(line)
        if problem:
            warnings.warn(f"{path} line {number}: {problem}; skipped", MonitorFileWarning, 2)
        else:
            records.append(record)
    return records


def _parse_record(line: str) -> tuple[str | None, dict | None]:
    """``(None, record)``, or ``(what is wrong, None)``."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        return f"not valid JSON ({e.msg})", None
    if not isinstance(record, dict) or type(record.get("epoch")) is not int:
        return "not a monitor record (no integer 'epoch')", None
    return None, record


def keep_epochs(folder: Path, completed: int) -> None:
    """Rewrite every ``folder/*.jsonl`` atomically without the records of epochs > ``completed``."""
    for path in sorted(Path(folder).glob("*.jsonl")):
        text = "".join(_line(r) for r in read_records(path) if r["epoch"] <= completed)
        atomic_write(path, lambda f, text=text: f.write(text.encode()))


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
