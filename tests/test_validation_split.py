"""data.val_samples: a fixed validation split carved from the training split; every epoch
evaluates it, the test set is read once, after the last epoch, and best.pt follows it."""

import json

import pytest
import torch
from helpers import QUICKSTART
from torch.utils.data import TensorDataset

import sj_ext.app.engine.trainer as trainer
from sj_ext.app.cli import main
from sj_ext.app.data.subset import dataset_labels, fixed_subset, split_off
from sj_ext.app.engine import train
from sj_ext.app.engine.build import build_run
from sj_ext.app.engine.checkpoint import load_checkpoint
from sj_ext.app.recipe import RecipeError, load_recipe
from sj_ext.app.report import write_report

QUIET = dict(log=lambda *a: None)
SHORT = ["train.device=cpu", "train.limit_train_batches=3", "monitor.every=null"]
VAL = [*SHORT, "data.val_samples=200"]


def test_split_off_holds_out_the_fixed_subset_and_keeps_the_rest():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)[torch.randperm(100)]
    data = TensorDataset(torch.arange(100.0), labels)
    rest, held = split_off(data, 20, "data.val_samples")
    assert held.indices == fixed_subset(data, 20, "x").indices  # stratified: 12, 6, 2
    assert torch.bincount(labels[held.indices]).tolist() == [12, 6, 2]
    assert rest.indices == sorted(set(range(100)) - set(held.indices))
    torch.manual_seed(5)  # no RNG state involved
    assert split_off(data, 20, "x")[1].indices == held.indices
    with pytest.raises(ValueError, match="data.val_samples: 100 would leave none of the 100"):
        split_off(data, 100, "data.val_samples")
    with pytest.raises(ValueError, match="data.val_samples: 101 is more than the 100 samples"):
        split_off(data, 101, "data.val_samples")


def test_the_engine_carves_the_same_validation_split_for_every_seed():
    full = build_run(load_recipe(QUICKSTART, SHORT), "cpu").data
    sets = [*VAL, "data.train_samples=300"]
    runs = [build_run(load_recipe(QUICKSTART, [*sets, f"seed={s}"]), "cpu") for s in (0, 7)]
    a, b = (r.data for r in runs)
    assert a.val.indices == b.val.indices and len(a.val) == 200
    assert a.val.indices == fixed_subset(full.train, 200, "x").indices
    # the training subset is cut from what the validation split leaves
    train_rows = [a.train.dataset.indices[i] for i in a.train.indices]
    assert len(train_rows) == 300 and not set(train_rows) & set(a.val.indices)
    assert len(a.test) == len(full.test)  # the test set is untouched
    counts = torch.bincount(dataset_labels(a.val), minlength=10)
    assert counts.min() >= 19 and counts.max() <= 21  # 200 of 10 balanced classes


def test_each_epoch_evaluates_the_validation_split_and_the_test_set_is_read_once(
    tmp_path, monkeypatch
):
    calls = []
    evaluate = trainer.evaluate

    def counted(*args, **kwargs):
        calls.append(args[5] if len(args) > 5 else kwargs.get("split", "test"))
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(trainer, "evaluate", counted)
    metrics = train(load_recipe(QUICKSTART, [*VAL, "train.epochs=3"]), tmp_path, **QUIET)
    assert calls == ["val", "val", "val", "test"]
    rows = metrics["epochs"]
    for row in rows:
        assert row["val_samples"] == 200 and len(row["val_per_class_acc"]) == 10
    assert ["test_acc" in row for row in rows] == [False, False, True]
    assert rows[-1]["test_samples"] == 360 and len(rows[-1]["per_class_acc"]) == 10
    assert metrics["final_test_acc"] == rows[-1]["test_acc"]
    assert metrics["best_val_acc"] == max(row["val_acc"] for row in rows)
    assert metrics["best_test_acc"] is None  # read once: no best over epochs
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    first_best = next(r["epoch"] for r in rows if r["val_acc"] == metrics["best_val_acc"])
    assert best["epoch"] == first_best


def test_a_validation_run_resumes_and_reports(tmp_path):
    train(load_recipe(QUICKSTART, [*VAL, "train.epochs=2"]), tmp_path, **QUIET)
    (tmp_path / "checkpoints" / "best.pt").unlink()  # reconciled on resume, by val_acc
    logs = []
    recipe = load_recipe(QUICKSTART, [*VAL, "train.epochs=3"])
    metrics = train(recipe, tmp_path, resume=True, log=logs.append)
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2, 3]
    assert any("resuming" in line for line in logs)
    assert (tmp_path / "checkpoints" / "best.pt").is_file()
    report = write_report([tmp_path], tmp_path / "report").read_text()
    assert f"| {metrics['best_val_acc']:.4g} (val) | {metrics['final_test_acc']:.4g} |" in report


def test_val_samples_is_checked(tmp_path, capsys):
    with pytest.raises(RecipeError, match=r"data.val_samples: must be >= 1 or null \(none\)"):
        load_recipe(QUICKSTART, ["data.val_samples=0"])
    args = ["train", str(QUICKSTART), "--out", str(tmp_path / "r"), "--set", "train.device=cpu"]
    assert main([*args, "--set", "data.val_samples=5000"]) == 2
    assert "data.val_samples: 5000 is more than the 1437 samples" in capsys.readouterr().err
