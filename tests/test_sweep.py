"""sj-ext sweep: a tiny grid on the digits quickstart (1 epoch of 2 batches per run)."""

import json
import statistics
from pathlib import Path

import pytest
import yaml

import sj_ext.sweep
from sj_ext.cli import main
from sj_ext.recipe import RecipeError
from sj_ext.sweep import SweepError, load_grid

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "recipes" / "digits_quickstart.yaml"
RUN_KEYS = {
    "name", "method", "recipe", "overrides", "seed", "T", "epochs", "train_samples",
    "test_samples", "device", "final_test_acc", "best_test_acc", "per_class_acc", "seconds",
    "run_dir",
}  # fmt: skip
SHARED = {
    "train.epochs": 1,
    "train.limit_train_batches": 2,
    "train.device": "cpu",
    "monitor.every": None,
    "data.test_samples": 100,
}


def write_grid(path: Path, configurations=None, **extra) -> Path:
    grid = {
        "seeds": [0, 1],
        "overrides": SHARED,
        "configurations": configurations
        or [
            {"name": "clsnn", "method": "clsnn", "recipe": str(QUICKSTART)},
            {
                "name": "plain_ce",
                "method": "ce",
                "recipe": str(QUICKSTART),
                "overrides": {"loss.name": "ce", "loss.args": {}},
            },
        ],
        **extra,
    }
    path.write_text(yaml.safe_dump(grid))
    return path


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    grid = write_grid(tmp / "tiny.yaml")
    args = ["sweep", str(grid), "--out", str(tmp / "runs"), "--json", str(tmp / "r.json")]
    assert main(args) == 0
    return tmp, args, json.loads((tmp / "r.json").read_text())


def test_the_json_holds_every_run_and_a_recomputable_summary(swept):
    tmp, _, result = swept
    runs = result["runs"]
    assert [(r["name"], r["seed"]) for r in runs] == [
        ("clsnn", 0), ("clsnn", 1), ("plain_ce", 0), ("plain_ce", 1)
    ]  # fmt: skip
    for r in runs:
        assert set(r) == RUN_KEYS
        assert (r["T"], r["epochs"], r["device"]) == (4, 1, "cpu")
        assert (r["train_samples"], r["test_samples"]) == (2 * 64, 100)
        assert len(r["per_class_acc"]) == 10 and r["seconds"] > 0
        metrics = json.loads((Path(r["run_dir"]) / "metrics.json").read_text())
        assert r["final_test_acc"] == metrics["final_test_acc"]
        assert r["per_class_acc"] == metrics["final_per_class_acc"]
    assert runs[2]["overrides"] == {**SHARED, "loss.name": "ce", "loss.args": {}}
    assert runs[0]["final_test_acc"] != runs[1]["final_test_acc"]  # the seeds differ
    for s in result["summary"]:
        rows = [r for r in runs if r["name"] == s["name"]]
        accs = [r["final_test_acc"] for r in rows]
        assert s["n"] == 2 and s["method"] == rows[0]["method"]
        assert s["final_test_acc"]["mean"] == pytest.approx(sum(accs) / 2)
        assert s["final_test_acc"]["std"] == pytest.approx(statistics.stdev(accs))
        assert s["best_test_acc"]["mean"] == pytest.approx(
            sum(r["best_test_acc"] for r in rows) / 2
        )
    table = (tmp / "r.md").read_text()
    mean, std = (100 * result["summary"][1]["final_test_acc"][k] for k in ("mean", "std"))
    assert f"| plain_ce | ce | 2 | {mean:.2f} ± {std:.2f} |" in table


def test_a_rerun_skips_finished_runs_and_resumes_unfinished_ones(swept, monkeypatch, capsys):
    tmp, args, first = swept
    calls = []
    real_train = sj_ext.sweep.train

    def spy(recipe, out, resume=False, log=print):
        calls.append((Path(out).parent.name, Path(out).name, resume))
        return real_train(recipe, out, resume=resume, log=log)

    monkeypatch.setattr(sj_ext.sweep, "train", spy)
    assert main(args) == 0
    assert calls == []  # all four finished: nothing trains
    assert json.loads((tmp / "r.json").read_text())["runs"] == first["runs"]
    assert capsys.readouterr().out.count("finished before, skipped") == 4
    # a second epoch for one run: it continues from its checkpoint
    more = args[:5] + [str(tmp / "r2.json"), "--set", "train.epochs=2"]
    more += ["--only", "plain_ce", "--seeds", "1"]
    assert main(more) == 0
    assert calls == [("plain_ce", "seed1", "auto")]  # the engine resumes: see below
    assert "resuming" in capsys.readouterr().out  # from its checkpoint, not from scratch
    (run,) = json.loads((tmp / "r2.json").read_text())["runs"]
    assert run["epochs"] == 2 and run["seed"] == 1


def test_a_bad_grid_is_a_clear_error(tmp_path, capsys):
    bad_method = [{"name": "a", "method": "adam", "recipe": str(QUICKSTART)}]
    grid = write_grid(tmp_path / "g.yaml", bad_method)
    with pytest.raises(SweepError, match=r"configurations\[0\]\.method: must be one of \['ce', "):
        load_grid(grid, tmp_path)
    assert main(["sweep", str(grid), "--out", str(tmp_path)]) == 2
    assert "got 'adam'" in capsys.readouterr().err
    no_recipe = [{"name": "a", "method": "ce", "overrides": {}}]
    with pytest.raises(SweepError, match=r"configurations\[0\]: missing key 'recipe'"):
        load_grid(write_grid(tmp_path / "g.yaml", no_recipe), tmp_path)
    twice = [{"name": "a", "method": "ce", "recipe": str(QUICKSTART)}] * 2
    with pytest.raises(SweepError, match="'a' repeats"):
        load_grid(write_grid(tmp_path / "g.yaml", twice), tmp_path)
    with pytest.raises(SweepError, match="seeds: expected a non-empty list of ints"):
        load_grid(write_grid(tmp_path / "g.yaml", seeds=[]), tmp_path)
    with pytest.raises(SweepError, match="--only nope: no such configuration"):
        load_grid(write_grid(tmp_path / "g.yaml"), tmp_path, only=["nope"])
    bad_key = [{"name": "a", "method": "ce", "recipe": str(QUICKSTART), "overrides": {"x.y": 1}}]
    with pytest.raises(RecipeError, match="--set x: unknown key"):
        load_grid(write_grid(tmp_path / "g.yaml", bad_key), tmp_path)
