import json
import math
import shutil
from collections import OrderedDict
from functools import partial
from pathlib import Path

import pytest
from helpers import QUICKSTART, png_size

from sj_ext.app.cli import main
from sj_ext.app.engine import train
from sj_ext.app.monitor import MONITORS, Monitor, MonitorFileWarning
from sj_ext.app.recipe import load_recipe
from sj_ext.app.report import FIGURES, ReportError, load_run, write_report
from sj_ext.app.report.figures import CAPTIONS, EPOCH_AXIS, figures, layer_label
from sj_ext.app.runfiles import append_record

SHORT = [
    "train.epochs=2",
    "train.limit_train_batches=3",
    "train.limit_eval_batches=2",
    "train.device=cpu",
    "monitor.every=1",
    f"monitor.names=[{', '.join(MONITORS)}]",
]
ADAPTIVE_FIGURES = set(FIGURES) - {"group_rate.png"}


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
    report = assert_figures(bare / "report", {"training_curves.png", "classes.png"})
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
    recipe = run / "recipe.yaml"
    if how == "recipe not YAML":
        recipe.write_text("data: [1, 2\n")
        return run, f"{recipe}: cannot read the run's recipe (while parsing"
    if how == "recipe not a mapping":
        recipe.write_text("- a\n- b\n")
        return run, f"{recipe}: not a recipe (a list, not a mapping)"
    if how == "recipe not UTF-8":
        recipe.write_bytes(b"seed: \xff\n")
        return run, f"{recipe}: cannot read the run's recipe (not UTF-8 text"
    data = json.loads(text)
    if how == "loss a string":
        data["epochs"][1]["train_loss"] = "0.5"
        metrics.write_text(json.dumps(data))
        return run, f"{metrics}: epoch record 2: train_loss: expected int or float, got str '0.5'"
    if how == "epoch a list":
        data["epochs"][0] = [1, 2]
        metrics.write_text(json.dumps(data))
        return run, f"{metrics}: epoch record 1: expected a mapping, got list [1, 2]"
    data["best_test_acc"] = {"acc": 1}
    metrics.write_text(json.dumps(data))
    return run, f"{metrics}: best_test_acc: expected int or float or null, got dict {{'acc': 1}}"


BROKEN = ["missing", "empty", "truncated", "no epoch", "recipe not YAML", "recipe not a mapping"]
BROKEN += ["recipe not UTF-8", "loss a string", "epoch a list", "best a mapping"]


@pytest.mark.parametrize("how", BROKEN)
def test_a_broken_run_folder_gives_a_clear_error(runs, tmp_path, capsys, how):
    run, message = broken(tmp_path, runs, how)
    with pytest.raises(ReportError) as err:
        write_report([run])
    assert message in str(err.value)
    assert main(["report", str(run)]) == 1
    assert f"sj-ext report: {message}" in capsys.readouterr().err
    assert not (run / "report").exists()


def test_damaged_monitor_lines_and_records_are_skipped_with_a_warning(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    rates = run / "monitor" / "firing_rate.jsonl"
    lines = rates.read_text().splitlines(keepends=True)
    lines[1] = '{"epoch": 1, "batch": 1, "lay\x00\n'  # a corrupted middle line
    lines[2] = json.dumps({**json.loads(lines[2]), "progress": "x"}) + "\n"  # a wrongly typed one
    rates.write_text("".join(lines))
    with pytest.warns(MonitorFileWarning) as caught:
        write_report([run])
    messages = [str(w.message) for w in caught]
    assert f"{rates} line 2: not valid JSON (Invalid control character at); skipped" in messages
    assert (
        f"{rates}: record 2: progress: expected int or float, got str 'x'; skipped" in messages
    )  # record 2 of those read
    assert main(["report", str(run)]) == 0  # the command shows the warnings in one line each
    err = capsys.readouterr().err
    assert f"sj-ext: warning: {rates} line 2: not valid JSON" in err
    assert_figures(run / "report", ADAPTIVE_FIGURES)


def test_report_takes_one_or_two_runs(runs, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(runs[0]), str(runs[1]), str(runs[0])])
    assert exit_.value.code == 2
    assert "report takes one or two run folders, got 3" in capsys.readouterr().err


@pytest.fixture
def named_run(tmp_path):
    """A run folder whose neuron is ``conv_fc.1`` (an ``IFNode``), sampled in epochs 1 and 2."""
    import torch
    from spikingjelly.activation_based import functional, layer, neuron
    from torch import nn

    net = nn.Sequential(OrderedDict(conv_fc=nn.Sequential(layer.Linear(4, 3), neuron.IFNode())))
    functional.set_step_mode(net, "m")
    run = tmp_path / "run"
    monitor = Monitor(net, names=["firing_rate", "threshold"], out_dir=run / "monitor")
    for epoch in (1, 2):
        with monitor.sample(epoch, 0, 4):
            net(torch.rand(3, 2, 4))
        functional.reset_net(net)
    rows = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5, "test_acc": 0.5} for e in (1, 2)]
    (run / "metrics.json").write_text(json.dumps({"epochs": rows, "best_test_acc": 0.5}))
    return run


def test_layers_are_labelled_by_module_name_and_class(named_run):
    run = load_run(named_run)
    assert run.monitors["firing_rate"][0]["kinds"] == {"conv_fc.1": "IFNode"}
    fig, _ = figures([run])["firing_rate.png"]()
    heatmap, over_training = fig.axes[:2]
    assert [t.get_text() for t in heatmap.get_yticklabels()] == ["conv_fc.1 (IFNode)"]
    assert over_training.get_legend_handles_labels()[1] == ["conv_fc.1 (IFNode)"]
    fig, _ = figures([run])["thresholds.png"]()
    assert fig.axes[0].get_title() == "layer conv_fc.1 (IFNode)"
    assert layer_label("", "AdaptiveThresholdLIF") == "AdaptiveThresholdLIF"  # the net is a neuron


def test_a_resnets_layers_are_named_by_their_module_path(tmp_path):
    """``layer2.0.residual.2``: the stage, the block in it, the neuron in the block."""
    import torch
    from spikingjelly.activation_based import functional

    from sj_ext.models.resnet import sew_resnet_small
    from sj_ext.neuron import AdaptiveThresholdLIF

    neuron = partial(AdaptiveThresholdLIF, step_mode="m")
    net = sew_resnet_small(10, 1, neuron, widths=(2, 2), blocks=(1, 1))
    functional.set_step_mode(net, "m")
    run = tmp_path / "run"
    monitor = Monitor(net, names=["threshold"], out_dir=run / "monitor")
    with monitor.sample(1, 0, 1):
        net(torch.rand(2, 2, 1, 8, 8))
    rows = [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.5}]
    (run / "metrics.json").write_text(json.dumps({"epochs": rows, "best_test_acc": 0.5}))
    fig, _ = figures([load_run(run)])["thresholds.png"]()
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    layers = ["stem.2", "layer1.0.residual.2", "layer1.0.residual.5"]
    layers += ["layer2.0.residual.2", "layer2.0.residual.5", "layer2.0.shortcut.2"]
    assert titles == [f"layer {name} (AdaptiveThresholdLIF)" for name in layers]


def test_every_plot_over_training_shares_one_epoch_axis(named_run):
    made = {name: make() for name, make in figures([load_run(named_run)]).items()}
    curves = made["training_curves.png"][0].axes
    rates = made["firing_rate.png"][0].axes[1]
    thresholds = made["thresholds.png"][0].axes[0]
    for ax in [*curves, rates, thresholds]:
        assert (ax.get_xlabel(), ax.get_xlim()) == (EPOCH_AXIS, (0.0, 2.0))
    # epoch e's curves lie at e (after e epochs), a batch sampled in epoch e at e - 1 + i / n
    assert list(curves[0].lines[0].get_xdata()) == [1, 2]
    assert list(rates.lines[0].get_xdata()) == [0.0, 1.0]


def test_reports_and_the_version_load_neither_torch_nor_the_neurons(tmp_path, run_python):
    """``import sj_ext.app.report``, ``sj-ext --version`` and ``sj-ext report`` read files only."""
    code = (
        "import sys\n"
        "import sj_ext.app.report\n"
        "from sj_ext.app.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"assert main(['report', {str(tmp_path / 'missing')!r}]) == 1\n"
        "heavy = [m for m in sys.modules if m == 'torch' or m.startswith('sj_ext.neuron')]\n"
        "assert not heavy, heavy\n"
    )
    run_python(code)


def write_run(folder: Path, scale: float) -> Path:
    """A run folder of two epochs whose recorded values are ``scale`` times a base run's.

    Two layers with thresholds and spreads far apart (``b`` at five times ``a``), the
    width of DS-ATGO's rule ``a_t = 1 + tanh(sigma_t - 1)`` beside ``sigma_t``, firing and
    group rates, curriculum pairs and per-class accuracies: every figure that compares.
    """
    folder.mkdir()
    rows = [
        {"epoch": e, "train_loss": scale / e, "train_acc": 0.5, "test_acc": 0.4}
        | {"per_class_acc": [scale * 0.1 * e, 0.2]}
        for e in (1, 2)
    ]
    (folder / "metrics.json").write_text(json.dumps({"epochs": rows, "best_test_acc": 0.4}))
    sigma = [scale * 1.0, scale * 1.05]
    layers = {
        "threshold": {
            "a": {"train": [scale, scale * 1.1], "sigma": sigma},
            "b": {"train": [5 * scale, 6 * scale], "sigma": [5 * s for s in sigma]},
        },
        "firing_rate": {"a": [0.1 * scale, 0.2 * scale], "b": [0.05, 0.1]},
        "group_rate": {"a": {"rate": [[0.1 * scale, 0.2], [0.3, 0.4]], "groups": [2]}},
    }
    layers["threshold"]["a"]["width"] = [1 + math.tanh(s - 1) for s in sigma]
    layers["group_rate"]["a"]["window"] = "block"
    curriculum = {"loss": [scale, 2 * scale], "sigma": [1.5 * scale, 0.5], "weight_easy": 0.6}
    curriculum |= {"mean_sigma_easy": 1.5, "mean_sigma_hard": 0.5}
    for epoch in (1, 2):
        where = {"epoch": epoch, "batch": 0, "progress": epoch - 1.0}
        for name, entries in layers.items():
            append_record(folder / "monitor" / f"{name}.jsonl", {**where, "layers": entries})
        append_record(folder / "monitor" / "curriculum.jsonl", {**where, **curriculum})
    return folder


@pytest.fixture
def two_runs(tmp_path):
    return [load_run(write_run(tmp_path / name, scale)) for name, scale in (("a", 1), ("b", 3))]


def panels(fig, title_end: str) -> list:
    """The titled panels of ``fig`` (no colour bar, no unused one) whose title ends so."""
    return [ax for ax in fig.axes if ax.get_title() and ax.get_title().endswith(title_end)]


#: figure -> the title ending of its panels that show one quantity for several layers or runs
COMPARED = {
    "thresholds.png": "",
    "sigma.png": "",
    "firing_rate.png": ": over training",
    "classes.png": "test accuracy per class",
}


def test_panels_that_are_compared_share_their_y_range(two_runs):
    made = {name: make() for name, make in figures(two_runs).items()}
    for name, ending in COMPARED.items():
        axes = panels(made[name][0], ending)
        assert len(axes) >= 2, name
        assert len({ax.get_ylim() for ax in axes}) == 1, name
    scatter = panels(made["curriculum.png"][0], ": weights vs loss")
    assert len(scatter) == 2
    assert len({(ax.get_xlim(), ax.get_ylim()) for ax in scatter}) == 1
    heatmaps = [ax.images[0] for ax in made["group_rate.png"][0].axes if ax.images]
    assert len(heatmaps) == 2 and len({image.get_clim() for image in heatmaps}) == 1


def test_the_surrogate_width_is_drawn_beside_sigma_and_their_overlap_explained(two_runs, tmp_path):
    fig, _ = figures(two_runs[:1])["sigma.png"]()
    layer_a = fig.axes[0]
    assert {line.get_linestyle() for line in layer_a.lines} == {"-", "--"}  # sigma_t and a_t
    heading, caption = CAPTIONS["sigma.png"]
    assert "a_t = a_0 (1 + tanh(sigma_t - v_0))" in caption and "overlap" in caption
    report = write_report([two_runs[0].path], tmp_path / "out").read_text()
    assert f"## {heading}\n\n{caption}" in report


def test_the_loss_is_named_and_a_negative_loss_is_explained(runs, tmp_path):
    from sj_ext.app.report.figures import _loss_title

    adaptive, grouped = (load_run(r) for r in runs)
    adaptive.metrics["epochs"][0]["train_loss"] = -0.5  # the confidence-aware loss can be
    grouped.metrics["epochs"][0]["train_loss"] = 0.5
    assert _loss_title([grouped]) == "Training loss (ce)"
    assert _loss_title([adaptive, grouped]) == (
        "Training loss (ce, confidence_aware)\nbelow 0: this loss can be negative"
    )


@pytest.mark.parametrize("loss, note", [("confidence_aware", True), ("ce", False)])
def test_the_log_names_the_loss_and_says_when_it_can_be_negative(tmp_path, loss, note):
    logs = []
    sets = [*SHORT, "monitor.every=null", "train.epochs=1", f"loss={{name: {loss}, args: {{}}}}"]
    train(load_recipe(QUICKSTART, sets), tmp_path, log=logs.append)
    assert [line for line in logs if line.startswith("epoch 1/1: ")][0].startswith(
        f"epoch 1/1: {loss} loss "
    )
    negative = f"note: the {loss} loss can be negative (it rewards easy samples)"
    assert (negative in logs) is note
