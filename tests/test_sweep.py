"""sj-ext sweep: a tiny grid on the digits quickstart (1 epoch of 2 batches per run)."""

import json
import statistics
from pathlib import Path

import pytest
import yaml
from helpers import QUICKSTART, ROOT

import sj_ext.app.sweep
from sj_ext.app.cli import main
from sj_ext.app.recipe import RecipeError
from sj_ext.app.runfiles import append_record, monitor_summary
from sj_ext.app.sweep import (
    SweepError,
    load_grid,
    markdown,
    recipe_digest,
    summarise,
)

RUN_KEYS = {
    "name", "method", "recipe", "overrides", "seed", "T", "epochs", "train_samples",
    "test_samples", "device", "final_test_acc", "best_test_acc", "best_val_acc", "per_class_acc",
    "seconds", "seconds_per_epoch", "spikes_per_image", "synops_per_image", "monitors",
    "recipe_sha256", "commit", "run_dir",
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
        env = json.loads((Path(r["run_dir"]) / "environment.json").read_text())
        assert r["commit"] == env["commit"]
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


def test_the_summary_averages_the_best_of_the_split_each_run_evaluated():
    """Validation runs: the best validation accuracy is averaged, the test best is null."""
    runs = [
        {"name": "val", "method": "m", "final_test_acc": t, "best_test_acc": None,
         "best_val_acc": v, "seconds": 10.0}
        for t, v in [(0.91, 0.93), (0.89, 0.96), (0.90, 0.93)]
    ]  # fmt: skip
    [s] = summarise(runs)
    assert s["best_test_acc"] is None
    assert s["best_val_acc"]["mean"] == pytest.approx(0.94)
    assert s["best_val_acc"]["std"] == pytest.approx((6e-4 / 2) ** 0.5)  # deviations -1, +2, -1 %
    assert "| val | m | 3 | 90.00 ± 1.00 | – | 94.00 ± 1.73 | 10 |" in markdown([s])


def test_a_results_file_from_before_validation_splits_is_summarised_as_it_was():
    """The committed study's rows have no ``best_val_acc``: a rerun that skips them keeps
    its summary, with the validation best null."""
    committed = json.loads((ROOT / "benchmarks/results/claims_mnist_runs.json").read_text())
    assert not any("best_val_acc" in r for r in committed["runs"])
    summary = summarise(committed["runs"])
    assert [s["best_val_acc"] for s in summary] == [None] * len(committed["summary"])
    for new, old in zip(summary, committed["summary"], strict=True):
        assert {k: new[k] for k in old} == old


def test_a_rerun_skips_finished_runs_and_resumes_unfinished_ones(swept, monkeypatch, capsys):
    tmp, args, first = swept
    calls = []
    real_train = sj_ext.app.sweep.train

    def spy(recipe, out, resume=False, log=print):
        calls.append((Path(out).parent.name, Path(out).name, resume))
        return real_train(recipe, out, resume=resume, log=log)

    monkeypatch.setattr(sj_ext.app.sweep, "train", spy)
    assert main(args) == 0
    assert calls == []  # all four finished: nothing trains
    assert json.loads((tmp / "r.json").read_text())["runs"] == first["runs"]
    assert capsys.readouterr().out.count("r.json already, skipped") == 4
    # a second epoch for one run: it continues from its checkpoint
    more = args[:5] + [str(tmp / "r2.json"), "--set", "train.epochs=2"]
    more += ["--only", "plain_ce", "--seeds", "1"]
    assert main(more) == 0
    assert calls == [("plain_ce", "seed1", "auto")]  # the engine resumes: see below
    assert "resuming" in capsys.readouterr().out  # from its checkpoint, not from scratch
    (run,) = json.loads((tmp / "r2.json").read_text())["runs"]
    assert run["epochs"] == 2 and run["seed"] == 1


def test_a_bad_grid_is_a_clear_error(tmp_path, capsys):
    free = [{"name": "a", "method": "my idea", "recipe": str(QUICKSTART)}]  # a free label
    assert [j.method for j in load_grid(write_grid(tmp_path / "g.yaml", free), tmp_path)] == [
        "my idea"
    ] * 2
    bad_method = [{"name": "a", "method": 3, "recipe": str(QUICKSTART)}]
    grid = write_grid(tmp_path / "g.yaml", bad_method)
    with pytest.raises(SweepError, match=r"configurations\[0\]\.method: expected str, got int 3"):
        load_grid(grid, tmp_path)
    assert main(["sweep", str(grid), "--out", str(tmp_path)]) == 2
    assert "got int 3" in capsys.readouterr().err
    no_recipe = [{"name": "a", "method": "ce", "overrides": {}}]
    with pytest.raises(SweepError, match=r"configurations\[0\]\.recipe: missing required key"):
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


def test_the_results_file_alone_skips_finished_runs(swept, tmp_path, monkeypatch, capsys):
    """A fresh clone has the committed results file but no run folders: nothing retrains."""
    tmp, args, first = swept
    (tmp_path / "r.json").write_text((tmp / "r.json").read_text())
    monkeypatch.setattr(sj_ext.app.sweep, "train", lambda *a, **k: pytest.fail("trained again"))
    fresh = ["sweep", args[1], "--out", str(tmp_path / "runs"), "--json", str(tmp_path / "r.json")]
    assert main(fresh) == 0
    assert json.loads((tmp_path / "r.json").read_text())["runs"] == first["runs"]
    assert not (tmp_path / "runs").exists()
    # a changed recipe is not the recorded run: its digest differs
    job = load_grid(args[1], tmp_path / "runs", ["optim.lr=0.5"], ["clsnn"], [0])[0]
    assert recipe_digest(job.recipe) != first["runs"][0]["recipe_sha256"]
    # a key added to the schema later, null by default, is no change of the runs recorded
    job = load_grid(args[1], tmp_path / "runs", [], ["clsnn"], [0])[0]
    later = {**job.recipe, "train": {**job.recipe["train"], "a_later_option": None}}
    assert recipe_digest(later) == recipe_digest(job.recipe) == first["runs"][0]["recipe_sha256"]
    later["train"]["a_later_option"] = 3  # set: another recipe
    assert recipe_digest(later) != recipe_digest(job.recipe)


def test_shards_split_the_grid_and_fill_one_results_file(tmp_path):
    grid = write_grid(tmp_path / "g.yaml")
    everything = load_grid(grid, tmp_path / "runs")
    shards = [load_grid(grid, tmp_path / "runs", shard=(k, 2)) for k in (1, 2)]
    names = [[(j.name, j.seed) for j in jobs] for jobs in shards]
    assert names == [[("clsnn", 0), ("plain_ce", 0)], [("clsnn", 1), ("plain_ce", 1)]]
    assert len(everything) == 4
    with pytest.raises(SweepError, match="--shard 3/2"):
        load_grid(grid, tmp_path / "runs", shard=(3, 2))
    base = ["sweep", str(grid), "--out", str(tmp_path / "runs"), "--json", str(tmp_path / "r.json")]
    for k in (1, 2):  # one after the other here; side by side they share the file's lock
        assert main(base + ["--shard", f"{k}/2"]) == 0
    runs = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert sorted((r["name"], r["seed"]) for r in runs) == sorted(sum(names, []))


def test_claims_name_configurations_and_reach_the_results_file(tmp_path, capsys):
    claim = {"name": "c", "question": "q?", "baseline": "plain_ce", "arms": ["clsnn"]}
    grid = write_grid(tmp_path / "g.yaml", claims=[claim])
    assert main(["sweep", str(grid), "--out", str(tmp_path / "runs"), "--json",
                 str(tmp_path / "r.json"), "--seeds", "0", "--only", "plain_ce"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "r.json").read_text())["claims"] == [claim]
    bad = write_grid(tmp_path / "g.yaml", claims=[{**claim, "arms": ["nope"]}])
    with pytest.raises(SweepError, match="'nope' is no configuration of the grid"):
        load_grid(bad, tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "--shard", "x", str(bad)])
    assert exit_.value.code == 2
    assert "expected K/N" in capsys.readouterr().err


def test_interactions_name_claims_of_one_arm_and_reach_the_results_file(tmp_path):
    claim = {"name": "c", "question": "q?", "baseline": "plain_ce", "arms": ["clsnn"]}
    other = {**claim, "name": "d"}
    item = {"name": "i", "question": "larger?", "minuend": "c", "subtrahend": "d"}
    grid = write_grid(tmp_path / "g.yaml", claims=[claim, other], interactions=[item])
    assert main(["sweep", str(grid), "--out", str(tmp_path / "runs"), "--json",
                 str(tmp_path / "r.json"), "--seeds", "0", "--only", "plain_ce"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "r.json").read_text())["interactions"] == [item]
    bad = write_grid(tmp_path / "g.yaml", claims=[claim], interactions=[item])
    with pytest.raises(SweepError, match=r"interactions\[0\].subtrahend: 'd' is no claim"):
        load_grid(bad, tmp_path)
    alone = {**other, "arms": ["plain_ce"]}  # nothing besides the baseline
    bad = write_grid(tmp_path / "g.yaml", claims=[claim, alone], interactions=[item])
    with pytest.raises(SweepError, match="claim 'd' must have one arm besides its baseline"):
        load_grid(bad, tmp_path)


def test_monitor_summary_condenses_the_records(tmp_path):
    folder = tmp_path / "monitor"
    for epoch, rates in [(1, [0.9, 0.9]), (2, [0.1, 0.3]), (2, [0.3, 0.5])]:
        append_record(folder / "firing_rate.jsonl", {"epoch": epoch, "layers": {"a": rates}})
    for progress, weight in [(0.0, 0.5), (0.5, 0.7)]:
        record = {"epoch": 1, "progress": progress, "weight_easy": weight,
                  "mean_sigma_easy": 2.0, "mean_sigma_hard": 0.5}  # fmt: skip
        append_record(folder / "curriculum.jsonl", record)
    append_record(folder / "energy.jsonl", {"epoch": 1, "snn": {"ac": 7.0, "mac": 3.0}})
    append_record(folder / "energy.jsonl",
                  {"epoch": 2, "snn": {"ac": 5.0, "mac": 3.0, "spikes": 11.0}})  # fmt: skip
    summary = monitor_summary(tmp_path)
    assert summary["firing_rate"] == {"a": [pytest.approx(0.2), pytest.approx(0.4)]}  # epoch 2
    assert summary["curriculum"] == [[0.0, 0.5, 2.0, 0.5], [0.5, 0.7, 2.0, 0.5]]
    assert summary["energy"] == {"spikes": 11.0, "synops": 5.0, "macs": 3.0}
    assert monitor_summary(tmp_path / "none") == {}


def test_grid_keys_are_checked_as_recipe_keys_are(tmp_path):
    """One checker for every structured input: a misspelt key of a configuration is named
    with its close match, once (no second line for the key it stands for), by its path."""
    misspelt = [{"name": "a", "method": "ce", "recipie": str(QUICKSTART)}]
    with pytest.raises(SweepError) as err:
        load_grid(write_grid(tmp_path / "g.yaml", misspelt), tmp_path)
    lines = str(err.value).splitlines()
    assert len(lines) == 1
    assert "configurations[0].recipie: unknown key" in lines[0]
    assert "'recipe'" in lines[0]  # did you mean


def test_the_converged_cl_snn_arm_is_the_headline_recipe(tmp_path):
    """benchmarks/claims_mnist_converged.yaml's confidence-aware arm resolves to exactly
    ``sj-ext train recipes/clsnn_mnist_cpu.yaml --set seed=S`` (the digest a results file
    records), so its runs are the headline's; its base-loss arm differs in the loss only."""
    from sj_ext.app.recipe import load_recipe

    grid = ROOT / "benchmarks/claims_mnist_converged.yaml"
    jobs = load_grid(grid, tmp_path, only=["clsnn_fixed", "clsnn_base_ce"], seeds=[0, 2])
    assert [(j.name, j.seed) for j in jobs] == [
        ("clsnn_fixed", 0), ("clsnn_fixed", 2), ("clsnn_base_ce", 0), ("clsnn_base_ce", 2)
    ]  # fmt: skip
    for job in jobs:
        headline = load_recipe(ROOT / "recipes/clsnn_mnist_cpu.yaml", [f"seed={job.seed}"])
        if job.name == "clsnn_fixed":
            assert recipe_digest(job.recipe) == recipe_digest(headline)
        else:
            assert job.recipe["loss"] == {"name": "ce", "args": {"logit_scale": 10.0}}
            assert {**job.recipe, "loss": headline["loss"]} == headline
