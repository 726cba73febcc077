import errno
import hashlib
import json
import math
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sj_ext import runfiles
from sj_ext.cli import main
from sj_ext.engine import TrainingError, build_run, train
from sj_ext.engine.build import time_major_input
from sj_ext.engine.checkpoint import CheckpointError, load_checkpoint
from sj_ext.engine.runfolder import RunLock
from sj_ext.recipe import load_recipe
from sj_ext.registry import LOSSES

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "recipes" / "digits_quickstart.yaml"
# a short run: 4 epochs of 6 batches (time is not what these tests measure)
SHORT = ["train.epochs=4", "train.limit_train_batches=6", "train.device=cpu"]
DIGITS_TEST_COUNTS = [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]  # the quickstart's test split


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


ENV = {  # this checkout's sj_ext, also in scripts (tests/kill_run.py) and torchrun workers
    **os.environ,
    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    "OMP_NUM_THREADS": "1",
}


def run_cli(*args, script=None):
    cmd = [sys.executable, *([str(script)] if script else ["-m", "sj_ext"]), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)


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
    assert not list(killed.rglob(".*.tmp.*"))  # what the kill left is removed
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


def quiet(*args):
    pass


TINY = ["train.epochs=2", "train.limit_train_batches=2", "train.device=cpu", "monitor.every=null"]


def test_non_finite_weights_fail_the_run_and_are_never_saved(tmp_path, capsys):
    # optim.lr=1e30: finite losses, but BatchNorm statistics and thresholds overflow
    out = tmp_path / "huge"
    assert main(["train", str(QUICKSTART), "--out", str(out), "--set", "optim.lr=1e30"]) == 1
    err = capsys.readouterr().err
    assert "non-finite values in model.1.running_var" in err
    assert "after epoch 1; the run stopped. Last good checkpoint: none yet" in err
    assert not list((out / "checkpoints").glob("*.pt"))


def test_non_finite_outputs_stop_the_run_before_the_loss(tmp_path):
    recipe = load_recipe(QUICKSTART, TINY)
    recipe["optim"]["lr"] = math.inf  # past recipe validation: the engine still stops it
    with pytest.raises(TrainingError) as err:  # not the loss's ValueError
        train(recipe, tmp_path, log=quiet)
    assert "non-finite model output (2560 of 2560 values) at epoch 1, batch 2" in str(err.value)


def test_one_writer_per_run_folder_and_stale_locks_are_taken_over(tmp_path):
    out = tmp_path / "run"
    holder = RunLock(out)
    holder.acquire(quiet)
    try:  # a second process, and a second writer in this one
        r = run_cli("train", str(QUICKSTART), "--out", str(out), *SHORT_SETS)
        assert r.returncode == 1
        assert f"in use by PID {os.getpid()} on {socket.gethostname()}" in r.stderr
        with pytest.raises(TrainingError, match=f"in use by PID {os.getpid()}"):
            train(load_recipe(QUICKSTART, TINY), out, resume=True, log=quiet)
    finally:
        holder.release()
    assert not (out / ".lock").exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    logs = []
    train(load_recipe(QUICKSTART, TINY), out, log=logs.append)
    assert f"took over the stale lock of PID {dead.pid} on {socket.gethostname()}" in logs[0]
    assert not (out / ".lock").exists()


def test_a_kill_inside_the_best_checkpoint_write_is_repaired_on_resume(tmp_path):
    out = tmp_path / "run"
    args = [str(QUICKSTART), "--out", str(out), *SHORT_SETS]
    k = run_cli("during", "2", "best.pt", "--", *args, script=ROOT / "tests" / "kill_run.py")
    assert k.returncode == -9, k.stderr
    ckpt = out / "checkpoints"
    epoch = load_checkpoint(ckpt / "latest.pt")["epoch"]  # the epoch whose best.pt died
    stale = load_checkpoint(ckpt / "best.pt")["epoch"]
    assert stale < epoch
    # resume with nothing left to train: only the repair runs
    r = run_cli("train", *args, "--resume", "--set", f"train.epochs={epoch}")
    assert r.returncode == 0, r.stderr
    assert f"rewrote {ckpt / 'best.pt'} from epoch {epoch} (it held epoch {stale})" in r.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    best = max(metrics["epochs"], key=lambda row: row["test_acc"])
    assert load_checkpoint(ckpt / "best.pt")["epoch"] == best["epoch"] == epoch
    assert not list(out.rglob(".*.tmp.*"))


def stop_run(out, signame, count, step):
    args = [signame, str(count), str(step), "--", str(QUICKSTART), "--out", str(out)]
    return run_cli(*args, *SHORT_SETS, script=ROOT / "tests" / "signal_run.py")


def test_sigterm_stops_cleanly_and_the_printed_command_resumes_exactly(tmp_path, uninterrupted):
    out = tmp_path / "run"
    r = stop_run(out, "SIGTERM", 1, 15)  # 6 batches an epoch: epoch 3, batch 3
    assert r.returncode == 128 + 15, r.stderr
    assert (
        "sj-ext train: stopped by SIGTERM during epoch 3, batch 3; that epoch is dropped. "
        f"Last good checkpoint: {out / 'checkpoints' / 'latest.pt'} (epoch 2)"
    ) in r.stderr
    command = shlex.split(r.stderr.split("continue with: ")[1].splitlines()[0])
    assert command[:2] == ["sj-ext", "train"] and command[-1] == "--resume"
    assert not (out / ".lock").exists()
    resumed = run_cli(*command[1:])
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads((out / "metrics.json").read_text())
    assert epochs_without_time(final) == epochs_without_time(uninterrupted)


def test_a_second_ctrl_c_stops_at_once_keeping_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    r = stop_run(out, "SIGINT", 2, 8)  # epoch 2, batch 2
    assert r.returncode == 128 + 2, r.stderr
    assert "a second signal (SIGINT): stopped at once" in r.stderr
    assert "continue with: sj-ext train" in r.stderr
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["epoch"] == 1
    assert not (out / ".lock").exists() and not list(out.rglob(".*.tmp.*"))


def test_a_damaged_checkpoint_is_detected_and_the_previous_one_resumes(tmp_path):
    out, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoints"
    whole = train(load_recipe(QUICKSTART, TINY), out, log=quiet)
    for name in ("latest.pt", "previous.pt", "best.pt"):  # `sha256sum -c` format, one digest
        digest = hashlib.sha256((ckpt / name).read_bytes()).hexdigest()
        assert (ckpt / f"{name}.sha256").read_text() == f"{digest}  {name}\n"
    latest = ckpt / "latest.pt"
    weight = next(v for v in load_checkpoint(latest)["model"].values() if v.numel() > 100)
    data = bytearray(latest.read_bytes())
    at = data.find(weight.numpy().tobytes())
    assert at > 0
    data[at + 2] ^= 0x40  # one bit of one float inside a tensor
    latest.write_bytes(data)
    torch.load(latest, weights_only=False)  # torch alone does not notice
    with pytest.raises(CheckpointError, match="damaged: its SHA-256 does not match"):
        load_checkpoint(latest)
    (ckpt / "best.pt").write_bytes(b"garbage")
    logs = []
    resumed = train(load_recipe(QUICKSTART, TINY), out, resume=True, log=logs.append)
    assert f"resuming from {ckpt / 'previous.pt'} (epoch 1) instead" in logs[0]
    assert epochs_without_time(resumed) == epochs_without_time(whole)
    assert load_checkpoint(ckpt / "best.pt")["epoch"] >= 1  # rewritten
    latest.write_bytes(latest.read_bytes()[:1000])  # truncated
    for name in ("previous.pt", "best.pt"):
        (ckpt / name).write_bytes(b"garbage")
    with pytest.raises(TrainingError) as err:
        train(load_recipe(QUICKSTART, TINY), out, resume=True, log=quiet)
    assert f"no valid checkpoint left in {ckpt}" in str(err.value)
    assert "Start again with another --out" in str(err.value)


def test_a_full_disk_keeps_the_last_checkpoint_and_names_the_folder(tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_open, writes = open, []

    class FullDisk:
        def __init__(self, path):
            self.f = real_open(path, "wb")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    def full_from_the_second_latest(path, mode="r", *args, **kwargs):
        if Path(path).name.startswith(".latest.pt.tmp."):
            writes.append(path)
            if len(writes) > 1:
                return FullDisk(path)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(runfiles, "open", full_from_the_second_latest, raising=False)
    with pytest.raises(TrainingError) as err:
        train(load_recipe(QUICKSTART, TINY), out, log=quiet)
    assert (
        f"cannot save epoch 2: the file system holding {out} is full (no space left on "
        f"device). Last good checkpoint: {out / 'checkpoints' / 'latest.pt'} (epoch 1)"
    ) in str(err.value)
    assert load_checkpoint(out / "checkpoints" / "latest.pt")["epoch"] == 1
    assert not list(out.rglob(".*.tmp.*"))


needs_torchrun = pytest.mark.skipif(shutil.which("torchrun") is None, reason="no torchrun")
DDP_SETS = [
    a
    for s in (
        "train.epochs=3",
        "train.limit_train_batches=3",
        "train.device=cpu",
        "train.sync_threshold_stats=true",
    )
    for a in ("--set", s)
]


def torchrun(*args, restarts=0):
    cmd = ["torchrun", "--standalone", "--nproc_per_node", "2", "--max-restarts", str(restarts)]
    return subprocess.run(
        [*cmd, *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300
    )


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    r = torchrun("-m", "sj_ext", "train", QUICKSTART, "--out", out, *DDP_SETS)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


@needs_torchrun
def test_two_process_gloo_run(ddp_run):
    out, r = ddp_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2, 3]
    for row in metrics["epochs"]:
        assert row["train_samples"] == 2 * 3 * 64  # reduced over both processes
        assert row["test_samples"] == 360  # the test set split across processes, counted once
        # per-class accuracies reduced over both processes: they recount the total exactly
        correct = sum(a * n for a, n in zip(row["per_class_acc"], DIGITS_TEST_COUNTS, strict=True))
        assert correct == pytest.approx(row["test_acc"] * 360)
    assert r.stdout.count("epoch 1/3:") == 1  # only rank 0 logs
    state = load_checkpoint(out / "checkpoints" / "latest.pt")
    assert not any(k.startswith("module.") for k in state["model"])  # unwrapped from DDP


@needs_torchrun
def test_torchrun_restart_with_resume_auto_equals_an_uninterrupted_ddp_run(tmp_path, ddp_run):
    # rank 1 SIGKILLs itself once, in epoch 2; torchrun restarts both workers with the
    # same command, which continues from epoch 1's checkpoint. The quickstart's loss has
    # an EMA threshold: only an EMA kept equal on both ranks resumes exactly.
    out, marker = tmp_path / "run", tmp_path / "killed-once"
    script = ROOT / "tests" / "kill_rank.py"
    args = ["train", QUICKSTART, "--out", out, "--resume", "auto", *DDP_SETS]
    r = torchrun(script, marker, "2", "--", *args, restarts=1)
    assert r.returncode == 0, r.stderr[-3000:]
    assert marker.is_file()  # the kill happened
    assert "resuming" in r.stdout and "after epoch 1" in r.stdout
    final = json.loads((out / "metrics.json").read_text())
    whole = json.loads((ddp_run[0] / "metrics.json").read_text())
    assert epochs_without_time(final) == epochs_without_time(whole)


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


def test_a_run_saved_before_a_key_existed_resumes_when_the_key_keeps_its_default(tmp_path):
    from sj_ext.engine.runfolder import refuse_incompatible

    recipe = load_recipe(QUICKSTART, ["train.device=cpu"])
    saved = json.loads(json.dumps(recipe))
    del saved["train"]["channels_last"], saved["data"]["train_samples"]  # an older run
    refuse_incompatible(saved, recipe, tmp_path / "latest.pt")  # defaults: accepted
    changed = load_recipe(QUICKSTART, ["train.device=cpu", "data.train_samples=100"])
    with pytest.raises(TrainingError, match=r"data.train_samples: '<absent>' -> 100|None -> 100"):
        refuse_incompatible(saved, changed, tmp_path / "latest.pt")
