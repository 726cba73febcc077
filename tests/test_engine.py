import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sj_ext.cli import main
from sj_ext.engine import TrainingError, build_run, train
from sj_ext.engine.checkpoint import load_checkpoint
from sj_ext.engine.trainer import time_major_input
from sj_ext.recipe import load_recipe
from sj_ext.registry import LOSSES

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "recipes" / "digits_quickstart.yaml"
# a short run: 4 epochs of 6 batches (time is not what these tests measure)
SHORT = ["train.epochs=4", "train.limit_train_batches=6", "train.device=cpu"]


def epochs_without_time(metrics: dict) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in metrics["epochs"]]


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart")
    metrics = train(load_recipe(QUICKSTART, ["train.device=cpu"]), out, log=lambda *a: None)
    return out, metrics


def test_quickstart_reaches_its_accuracy_target(quickstart_run):
    out, metrics = quickstart_run
    assert metrics["final_test_acc"] >= 0.95
    assert metrics["best_test_acc"] == max(r["test_acc"] for r in metrics["epochs"])
    assert [r["epoch"] for r in metrics["epochs"]] == list(range(1, 11))
    assert all(r["test_samples"] == 360 for r in metrics["epochs"])  # 20% of 1797
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["final_test_acc"] == metrics["final_test_acc"]
    for row in on_disk["epochs"]:
        assert {"epoch", "train_loss", "train_acc", "test_acc", "seconds"} <= row.keys()
        assert 0 <= row["train_acc"] <= 1 and 0 <= row["test_acc"] <= 1
    assert load_recipe(out / "recipe.yaml") == load_recipe(QUICKSTART, ["train.device=cpu"])
    assert any((out / "tb").iterdir())
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    assert best["best_test_acc"] == metrics["best_test_acc"]
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "rng", "loss"} <= best.keys()


def test_eval_reproduces_the_recorded_accuracy(quickstart_run, capsys):
    out, metrics = quickstart_run
    ckpt = out / "checkpoints" / "best.pt"
    assert (
        main(["eval", str(QUICKSTART), "--checkpoint", str(ckpt), "--set", "train.device=cpu"]) == 0
    )
    result = json.loads((out / "eval.json").read_text())
    assert result["test_acc"] == metrics["best_test_acc"]
    assert f"test acc {metrics['best_test_acc']:.4f}" in capsys.readouterr().out


def run_cli(*args, script=None):
    cmd = [sys.executable, *([str(script)] if script else ["-m", "sj_ext"]), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_refuses_to_overwrite_a_run_and_resumes_nothing_missing(tmp_path):
    out = tmp_path / "run"
    r = run_cli(
        "train",
        str(QUICKSTART),
        "--out",
        str(out),
        "--set",
        *SHORT[:1],
        "--set",
        "train.epochs=1",
        "--set",
        "train.limit_train_batches=2",
        "--set",
        "train.device=cpu",
    )
    assert r.returncode == 0, r.stderr
    again = run_cli(
        "train",
        str(QUICKSTART),
        "--out",
        str(out),
        "--set",
        "train.epochs=1",
        "--set",
        "train.device=cpu",
    )
    assert again.returncode == 1 and "already holds a run" in again.stderr
    missing = run_cli("train", str(QUICKSTART), "--out", str(tmp_path / "none"), "--resume")
    assert missing.returncode == 1 and "no checkpoint" in missing.stderr


SHORT_SETS = [a for s in SHORT for a in ("--set", s)]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    r = run_cli("train", str(QUICKSTART), "--out", str(out), *SHORT_SETS)
    assert r.returncode == 0, r.stderr
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.parametrize("mode,count", [("after", 2), ("during", 3)])
def test_kill_minus_9_then_resume_equals_an_uninterrupted_run(tmp_path, uninterrupted, mode, count):
    killed = tmp_path / "killed"
    k = run_cli(
        mode,
        str(count),
        "--",
        str(QUICKSTART),
        "--out",
        str(killed),
        *SHORT_SETS,
        script=ROOT / "tests" / "kill_run.py",
    )
    assert k.returncode == -9, k.stderr
    state = load_checkpoint(killed / "checkpoints" / "latest.pt")  # intact, loadable
    assert state["epoch"] == (count if mode == "after" else count - 1)
    if mode == "during":  # the half-written file never replaced the good checkpoint
        assert list((killed / "checkpoints").glob(".latest.pt.tmp.*"))
    resumed = run_cli("train", str(QUICKSTART), "--out", str(killed), "--resume", *SHORT_SETS)
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads((killed / "metrics.json").read_text())
    assert epochs_without_time(final) == epochs_without_time(uninterrupted)
    assert final["best_test_acc"] == uninterrupted["best_test_acc"]


def test_resume_refuses_an_incompatible_recipe(tmp_path):
    sets = ["train.epochs=1", "train.limit_train_batches=2", "train.device=cpu"]
    out = tmp_path / "run"
    train(load_recipe(QUICKSTART, sets), out, log=lambda *a: None)
    changed = load_recipe(QUICKSTART, [*sets, "optim.lr=0.1", "neuron.args.tau=2.0"])
    with pytest.raises(TrainingError) as err:
        train(changed, out, resume=True, log=lambda *a: None)
    assert "neuron.args.tau: 1.25 -> 2.0" in str(err.value)
    assert "optim.lr: 0.005 -> 0.1" in str(err.value)
    # more epochs is a compatible change
    more = train(
        load_recipe(QUICKSTART, [*sets[1:], "train.epochs=2"]),
        out,
        resume=True,
        log=lambda *a: None,
    )
    assert [r["epoch"] for r in more["epochs"]] == [1, 2]


class NanAfter(torch.nn.Module):
    """Cross-entropy that turns NaN from its ``after``-th call on."""

    def __init__(self, after: int):
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, out, target):
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(out.mean(0), target)
        return loss * float("nan") if self.calls > self.after else loss


if "test_nan_after" not in LOSSES:
    LOSSES.register("test_nan_after", NanAfter)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    recipe = load_recipe(
        QUICKSTART,
        [
            "train.epochs=3",
            "train.limit_train_batches=4",
            "train.device=cpu",
            "loss.name=test_nan_after",
            "loss.args={after: 6}",
        ],
    )
    with pytest.raises(TrainingError) as err:
        train(recipe, tmp_path, log=lambda *a: None)
    msg = str(err.value)
    assert "non-finite training loss (nan) at epoch 2, batch 3" in msg
    assert "latest.pt (epoch 1)" in msg
    assert load_checkpoint(tmp_path / "checkpoints" / "latest.pt")["epoch"] == 1
    assert len(json.loads((tmp_path / "metrics.json").read_text())["epochs"]) == 1


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_two_process_gloo_run(tmp_path):
    out = tmp_path / "ddp"
    sets = [
        "train.epochs=2",
        "train.limit_train_batches=3",
        "train.device=cpu",
        "train.sync_threshold_stats=true",
    ]
    cmd = [
        "torchrun",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "sj_ext",
        "train",
        str(QUICKSTART),
        "--out",
        str(out),
        *(a for s in sets for a in ("--set", s)),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    for row in metrics["epochs"]:
        assert row["train_samples"] == 2 * 3 * 64  # reduced over both processes
        assert row["test_samples"] == 360  # the test set split across processes, counted once
    assert r.stdout.count("epoch 1/2:") == 1  # only rank 0 logs
    state = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert not any(k.startswith("module.") for k in state["model"])  # unwrapped from DDP


@pytest.mark.parametrize("on", [True, False])
def test_train_channels_last_sets_the_memory_format_of_model_and_inputs(on):
    recipe = load_recipe(QUICKSTART, ["train.device=cpu", f"train.channels_last={str(on).lower()}"])
    run = build_run(recipe, torch.device("cpu"))
    (conv,) = [m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert conv.weight.shape == (32, 1, 3, 3)
    assert conv.weight.stride() == ((9, 1, 3, 1) if on else (9, 9, 3, 1))
    images = torch.rand(2, 3, 8, 8)  # [N, C, H, W] with C > 1 (the digits' C = 1 fits both)
    x = time_major_input(images, recipe, run.data)
    assert x.shape == (4, 2, 3, 8, 8) and torch.equal(x[0], images)
    assert x.flatten(0, 1).is_contiguous(memory_format=torch.channels_last) == on
