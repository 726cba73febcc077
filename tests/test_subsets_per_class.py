"""data.train_samples / data.test_samples (fixed subsets) and per-class test accuracy."""

import json

import pytest
import torch
from helpers import QUICKSTART
from torch.utils.data import Dataset, TensorDataset

from sj_ext.app.cli import main
from sj_ext.app.data import DataSpec
from sj_ext.app.data.subset import dataset_labels, fixed_subset
from sj_ext.app.engine import train
from sj_ext.app.engine.build import build_run
from sj_ext.app.engine.distributed import DistInfo
from sj_ext.app.engine.evaluate import evaluate
from sj_ext.app.recipe import RecipeError, load_recipe

CPU = ["train.device=cpu"]


class Unlabelled(Dataset):
    def __len__(self):
        return 50

    def __getitem__(self, i):
        return torch.zeros(1), 0


def test_a_subset_is_fixed_stratified_and_in_order():
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)[torch.randperm(100)]
    data = TensorDataset(torch.arange(100.0), labels)
    sub = fixed_subset(data, 20, "data.train_samples")
    assert sub.indices == sorted(sub.indices) and len(set(sub.indices)) == 20
    assert torch.bincount(labels[sub.indices]).tolist() == [12, 6, 2]  # 20 * 60/100, 30/100, ...
    assert fixed_subset(data, 20, "x").indices == sub.indices  # no RNG state involved
    torch.manual_seed(123)
    assert fixed_subset(data, 20, "x").indices == sub.indices
    assert fixed_subset(data, None, "x") is data
    assert dataset_labels(sub).tolist() == labels[sub.indices].tolist()
    plain = fixed_subset(Unlabelled(), 7, "x")  # no labels: a seeded uniform draw
    assert len(plain) == 7 and plain.indices == fixed_subset(Unlabelled(), 7, "x").indices
    with pytest.raises(ValueError, match="data.test_samples: 101 is more than the 100 samples"):
        fixed_subset(data, 101, "data.test_samples")


def test_the_engine_cuts_the_same_subset_for_every_seed():
    sets = CPU + ["data.train_samples=200", "data.test_samples=100"]
    runs = [build_run(load_recipe(QUICKSTART, sets + [f"seed={s}"]), "cpu") for s in (0, 7)]
    assert [len(r.data.train) for r in runs] == [200, 200]
    assert runs[0].data.train.indices == runs[1].data.train.indices
    assert runs[0].data.test.indices == runs[1].data.test.indices
    counts = torch.bincount(dataset_labels(runs[0].data.test), minlength=10)
    assert counts.min() >= 9 and counts.max() <= 11  # ~36 per class in 360: 10 each


def test_subset_keys_are_checked(tmp_path, capsys):
    with pytest.raises(RecipeError, match=r"data.train_samples: must be >= 1 or null \(all\)"):
        load_recipe(QUICKSTART, ["data.train_samples=0"])
    with pytest.raises(RecipeError, match="data.test_samples: expected int or null"):
        load_recipe(QUICKSTART, ["data.test_samples=0.5"])
    args = ["train", str(QUICKSTART), "--out", str(tmp_path / "r")]
    assert main(args + ["--set", "train.device=cpu", "--set", "data.test_samples=361"]) == 2
    assert "data.test_samples: 361 is more than the 360 samples" in capsys.readouterr().err


class Oracle(torch.nn.Module):
    """Predicts the class stored in the input's first feature: ``[T, N, 1]`` -> ``[T, N, C]``."""

    def forward(self, x):
        return torch.nn.functional.one_hot(x[..., 0].long(), 4).float()


def test_per_class_accuracy_matches_a_hand_count():
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 0, 1])
    pred = torch.tensor([0, 0, 1, 0, 1, 2, 2, 2, 2, 3, 1])
    data = DataSpec(None, TensorDataset(pred[:, None].float(), y), num_classes=4, in_channels=1)
    recipe = load_recipe(QUICKSTART, ["data.batch_size=4"])
    acc, count, per_class = evaluate(Oracle(), recipe, data, torch.device("cpu"), DistInfo())
    # class 0: 3 of 5 right, class 1: 2 of 4, class 2: 2 of 2, class 3: no sample
    assert per_class == [3 / 5, 2 / 4, 1.0, None]
    assert (acc, count) == (7 / 11, 11)


def test_metrics_json_records_per_class_accuracy(tmp_path):
    sets = CPU + ["train.epochs=2", "train.limit_train_batches=3", "data.test_samples=100"]
    sets += ["monitor.every=null"]
    metrics = train(load_recipe(QUICKSTART, sets), tmp_path, log=lambda *a: None)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["final_per_class_acc"] == on_disk["epochs"][-1]["per_class_acc"]
    assert metrics["final_per_class_acc"] == on_disk["final_per_class_acc"]
    test = build_run(load_recipe(QUICKSTART, sets), "cpu").data.test
    n_c = torch.bincount(dataset_labels(test), minlength=10)
    for row in on_disk["epochs"]:
        assert len(row["per_class_acc"]) == 10 and row["test_samples"] == 100
        correct = sum(a * n for a, n in zip(row["per_class_acc"], n_c.tolist(), strict=True))
        assert correct == pytest.approx(row["test_acc"] * 100)
