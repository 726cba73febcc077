import json
import shutil
import struct
from pathlib import Path

import pytest

from sj_ext.cli import main
from sj_ext.engine import train
from sj_ext.monitor import MONITORS
from sj_ext.recipe import load_recipe
from sj_ext.report import FIGURES, ReportError, write_report

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "recipes" / "digits_quickstart.yaml"
SHORT = [
    "train.epochs=2",
    "train.limit_train_batches=3",
    "train.limit_eval_batches=2",
    "train.device=cpu",
    "monitor.every=1",
    f"monitor.names=[{', '.join(MONITORS)}]",
]
ADAPTIVE_FIGURES = set(FIGURES) - {"group_rate.png"}


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk of a complete PNG file."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND", f"{path} is truncated"
    return struct.unpack(">II", data[16:24])


def assert_figures(folder: Path, expected: set[str]):
    assert {p.name for p in folder.glob("*.png")} == expected
    report = (folder / "report.md").read_text()
    for name in expected:
        width, height = png_size(folder / name)
        assert 400 <= width <= 3000 and 250 <= height <= 3000, (name, width, height)
        assert f"]({name})" in report
    return report


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An adaptive-threshold quickstart run and a grouped fixed-threshold one, monitors on."""
    adaptive, grouped = tmp_path_factory.mktemp("adaptive"), tmp_path_factory.mktemp("grouped")
    quiet = dict(log=lambda *a: None)
    train(load_recipe(QUICKSTART, SHORT), adaptive, **quiet)
    grouped_sets = [
        "neuron.name=dilated_window_lif",
        "neuron.args={tau: 2.0}",
        "neuron.surrogate={name: sigmoid, args: {}}",
        "loss={name: ce, args: {}}",
        "train.limit_train_batches=2",
    ]
    train(load_recipe(QUICKSTART, [*SHORT, *grouped_sets]), grouped, **quiet)
    return adaptive, grouped


def test_report_of_a_monitored_quickstart_run(runs, tmp_path):
    adaptive, _ = runs
    report_path = write_report([adaptive], tmp_path / "out")
    assert report_path == tmp_path / "out" / "report.md"
    report = assert_figures(tmp_path / "out", ADAPTIVE_FIGURES)
    metrics = json.loads((adaptive / "metrics.json").read_text())
    assert f"| {metrics['final_test_acc']:.4g} |" in report
    assert "## Operations and energy per inference" in report
    assert "| ANN / SNN energy |" in report and "4.6 pJ per MAC, 0.9 pJ per AC" in report
    assert "no records" not in report


def test_report_command_overlays_two_runs(runs, capsys):
    adaptive, grouped = runs
    assert main(["report", str(adaptive), str(grouped)]) == 0
    out = adaptive / f"report_vs_{grouped.name}"
    assert f"wrote {out / 'report.md'}" in capsys.readouterr().out
    report = assert_figures(out, set(FIGURES))
    assert f"# sj-ext report: {adaptive.name} vs {grouped.name}" in report
    assert f"(no records in {grouped.name})" in report  # no curriculum, no running threshold
    assert report.count(" (epoch 2) |") == 2  # one energy column per run


def test_a_run_without_monitors_gets_its_training_curves(runs, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(runs[0] / "metrics.json", bare)
    assert main(["report", str(bare)]) == 0
    report = assert_figures(bare / "report", {"training_curves.png"})
    assert "energy" not in report


def test_a_half_written_monitor_line_is_skipped(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    with open(run / "monitor" / "firing_rate.jsonl", "a") as f:
        f.write('{"epoch": 3, "batch": 0, "layers": {"2": [0.1')
    assert_figures(Path(write_report([run])).parent, ADAPTIVE_FIGURES)


def broken(tmp_path: Path, runs, how: str) -> tuple[Path, str]:
    """A run folder broken in one way, and the message expected."""
    run = tmp_path / "run"
    if how == "missing":
        return run, f"{run}: no such run folder"
    run.mkdir()
    metrics = run / "metrics.json"
    if how == "empty":
        return run, f"{run}: not a run folder, or no epoch has finished yet"
    text = (runs[0] / "metrics.json").read_text()
    if how == "truncated":
        metrics.write_text(text[: len(text) // 2])
        return run, f"{metrics}: truncated or not valid JSON"
    if how == "no epoch":
        metrics.write_text(json.dumps({"epochs": [], "best_test_acc": None}))
        return run, f"{metrics}: holds no finished epoch"
    metrics.write_text(text)
    (run / "monitor").mkdir()
    file = run / "monitor" / "threshold.jsonl"
    if how == "corrupt monitor line":
        file.write_text('{"epoch": 1}\nxx\n{"epoch": 2}\n')
        return run, f"{file} line 2: not valid JSON"
    file.write_text('{"epoch": 1, "layers": {}}\n')
    return run, f"{file}: record 1 lacks ['progress']"


@pytest.mark.parametrize(
    "how", ["missing", "empty", "truncated", "no epoch", "corrupt monitor line", "bad record"]
)
def test_a_broken_run_folder_gives_a_clear_error(runs, tmp_path, capsys, how):
    run, message = broken(tmp_path, runs, how)
    with pytest.raises(ReportError) as err:
        write_report([run])
    assert message in str(err.value)
    assert main(["report", str(run)]) == 1
    assert f"sj-ext report: {message}" in capsys.readouterr().err
    assert not (run / "report").exists()


def test_report_takes_one_or_two_runs(runs, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(runs[0]), str(runs[1]), str(runs[0])])
    assert exit_.value.code == 2
    assert "report takes one or two run folders, got 3" in capsys.readouterr().err
