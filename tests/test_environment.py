"""environment.json: where a run ran, written at its start and checked at resume."""

import importlib.metadata
import json
import subprocess

import pytest
import torch
from helpers import QUICKSTART, ROOT

import sj_ext
import sj_ext.app.engine.environment as environment
import sj_ext.app.engine.trainer as trainer
from sj_ext.app.engine import Preempted, train
from sj_ext.app.recipe import load_recipe
from sj_ext.app.report import write_report
from sj_ext.app.runfiles import ENVIRONMENT_KEYS

TINY = ["train.device=cpu", "train.limit_train_batches=2", "monitor.every=null"]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()


def test_a_run_records_where_it_ran(tmp_path):
    train(load_recipe(QUICKSTART, [*TINY, "train.epochs=1"]), tmp_path, log=lambda *a: None)
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["torch"] == torch.__version__ and env["sj_ext"] == sj_ext.__version__
    assert env["spikingjelly"] == importlib.metadata.version("spikingjelly")
    assert env["spikingjelly"].startswith("2.0")  # what setup.cfg asks for
    assert env["threads"] == torch.get_num_threads() and env["device"].startswith("cpu: ")
    assert env["deterministic_algorithms"] == torch.are_deterministic_algorithms_enabled()
    assert env["cudnn_deterministic"] == torch.backends.cudnn.deterministic
    assert env["cuda"] == torch.version.cuda and env["resumed"] == []
    assert isinstance(env["command"], list) and set(ENVIRONMENT_KEYS) <= env.keys()
    if _git("rev-parse", "HEAD"):  # a checkout: the commit, and whether the tree had changes
        assert env["commit"] == _git("rev-parse", "HEAD")
        assert env["dirty"] == bool(_git("status", "--porcelain", "--untracked-files=no"))


def test_a_resume_under_another_version_warns_once_naming_it(tmp_path, monkeypatch):
    recipe = load_recipe(QUICKSTART, [*TINY, "train.epochs=2"])
    real = environment.environment
    record = trainer.Trainer._record

    def record_then_stop(self, row, split):  # a stop right after epoch 1's checkpoint
        record(self, row, split)
        raise Preempted("stopped by SIGTERM", 15)

    monkeypatch.setattr(trainer.Trainer, "_record", record_then_stop)
    with pytest.raises(Preempted):
        train(recipe, tmp_path, log=lambda *a: None)
    monkeypatch.setattr(trainer.Trainer, "_record", record)
    monkeypatch.setattr(
        environment, "environment", lambda device: {**real(device), "torch": "9.9.9"}
    )
    logs = []
    train(recipe, tmp_path, resume=True, log=logs.append)
    warned = [line for line in logs if "another environment" in line]
    assert warned == [
        f"warning: resuming under another environment: torch {torch.__version__} -> 9.9.9"
    ]
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["torch"] == torch.__version__  # the start stays on top
    assert [e["torch"] for e in env["resumed"]] == ["9.9.9"]
    report = write_report([tmp_path]).read_text()
    assert "## Environment" in report and "| torch | " + torch.__version__ in report
    assert "was resumed 1 time(s), last under python" in report and "torch 9.9.9" in report


def test_a_resume_in_the_same_environment_says_nothing(tmp_path):
    recipe = load_recipe(QUICKSTART, [*TINY, "train.epochs=1"])
    train(recipe, tmp_path, log=lambda *a: None)
    logs = []
    train(
        load_recipe(QUICKSTART, [*TINY, "train.epochs=2"]), tmp_path, resume=True, log=logs.append
    )
    assert not [line for line in logs if "another environment" in line]
    assert len(json.loads((tmp_path / "environment.json").read_text())["resumed"]) == 1
