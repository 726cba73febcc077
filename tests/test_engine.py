import ast
import errno
import hashlib
import json
import math
import os
import random
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import HELPERS, PROCESS_ENV, QUICKSTART, ROOT
from torch.utils.data import DataLoader, DistributedSampler

from sj_ext import fused_lif
from sj_ext.app import engine, runfiles
from sj_ext.app.cli import main
from sj_ext.app.components import LOSSES, MODELS
from sj_ext.app.engine import TrainingError, build_run, train
from sj_ext.app.engine.build import time_major_input
from sj_ext.app.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from sj_ext.app.engine.distributed import DistInfo
from sj_ext.app.engine.resume import resume_changes, steps_per_epoch
from sj_ext.app.engine.runfolder import RunLock
from sj_ext.app.recipe import load_recipe

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
    assert max(r["test_acc"] for r in best["epochs"]) == metrics["best_test_acc"]
    assert best["epoch"] == next(
        r["epoch"] for r in metrics["epochs"] if r["test_acc"] == metrics["best_test_acc"]
    )
    assert {"model", "optimizer", "scaler", "epoch", "rng", "loss"} <= best.keys()


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
    return subprocess.run(
        cmd, capture_output=True, text=True, cwd=ROOT, env=PROCESS_ENV, timeout=300
    )


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
    assert missing.returncode == 1 and "there is no run folder" in missing.stderr
    assert not (tmp_path / "none").exists()  # nothing left behind
    (tmp_path / "empty").mkdir()
    empty = run_cli("train", str(QUICKSTART), "--out", str(tmp_path / "empty"), "--resume")
    assert empty.returncode == 1 and "no checkpoint" in empty.stderr


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
        script=HELPERS / "kill_run.py",
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
    """Cross-entropy whose value (``part='loss'``), or a buffer of its own while the value
    stays finite (``part='buffer'``), turns NaN from its ``after``-th call on."""

    def __init__(self, after: int, part: str = "loss"):
        super().__init__()
        self.after, self.part, self.calls = after, part, 0
        self.register_buffer("scale", torch.ones(()))

    def forward(self, out, target):
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(out.mean(0), target)
        if self.calls <= self.after:
            return loss
        if self.part == "buffer":
            self.scale.fill_(float("nan"))
            return loss
        return loss * float("nan")


if "test_nan_after" not in LOSSES:
    LOSSES.register("test_nan_after", NanAfter)


def stopped_by_nan(tmp_path, loss_args: str) -> str:
    """The error of a 3-epoch quickstart run whose ``test_nan_after`` loss has ``loss_args``."""
    sets = ["train.epochs=3", "train.limit_train_batches=4", "train.device=cpu"]
    recipe = load_recipe(QUICKSTART, sets + ["loss.name=test_nan_after", f"loss.args={loss_args}"])
    with pytest.raises(TrainingError) as err:
        train(recipe, tmp_path, log=lambda *a: None)
    return str(err.value)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    msg = stopped_by_nan(tmp_path, "{after: 6}")
    assert "non-finite training loss (nan) at epoch 2, batch 3" in msg
    assert "latest.pt (epoch 1)" in msg
    assert load_checkpoint(tmp_path / "checkpoints" / "latest.pt")["epoch"] == 1
    assert len(json.loads((tmp_path / "metrics.json").read_text())["epochs"]) == 1


def test_a_non_finite_buffer_stops_the_run_at_its_batch(tmp_path):
    assert (
        "non-finite values in loss.scale at epoch 2, batch 3; the run stopped. Last good "
        f"checkpoint: {tmp_path / 'checkpoints' / 'latest.pt'} (epoch 1)"
    ) in stopped_by_nan(tmp_path, "{after: 6, part: buffer}")
    kept = load_checkpoint(tmp_path / "checkpoints" / "latest.pt")
    assert kept["epoch"] == 1 and kept["loss"]["scale"] == 1


def quiet(*args):
    pass


TINY = ["train.epochs=2", "train.limit_train_batches=2", "train.device=cpu", "monitor.every=null"]


def test_non_finite_weights_fail_the_run_at_their_batch_and_are_never_saved(tmp_path, capsys):
    # optim.lr=1e30: finite losses, but the first step overflows the BatchNorm statistics
    # and the thresholds, which the second batch's forward pass updates
    out = tmp_path / "huge"
    assert main(["train", str(QUICKSTART), "--out", str(out), "--set", "optim.lr=1e30"]) == 1
    err = capsys.readouterr().err
    assert (
        "non-finite values in model.1.running_var, model.2.running_threshold at epoch 1, "
        "batch 2; the run stopped. Last good checkpoint: none yet"
    ) in err
    assert not list((out / "checkpoints").glob("*.pt"))


class InfOutputAfter(torch.nn.Module):
    """The quickstart's ``small_cnn``, whose output turns non-finite from its ``after``-th
    call on (its parameters stay finite)."""

    def __init__(self, num_classes: int, in_channels: int, spiking_neuron, after: int):
        super().__init__()
        self.net = MODELS.get("small_cnn")(num_classes, in_channels, spiking_neuron)
        self.after, self.calls = after, 0

    def forward(self, x):
        self.calls += 1
        out = self.net(x)
        return out * math.inf if self.calls > self.after else out


if "test_inf_output_after" not in MODELS:
    MODELS.register("test_inf_output_after", InfOutputAfter)


def test_non_finite_outputs_stop_the_run_before_the_loss(tmp_path):
    sets = ["model.name=test_inf_output_after", "model.args={after: 1}"]
    recipe = load_recipe(QUICKSTART, [*TINY, *sets])
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
    k = run_cli("during", "2", "best.pt", "--", *args, script=HELPERS / "kill_run.py")
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
    return run_cli(*args, *SHORT_SETS, script=HELPERS / "signal_run.py")


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


def test_a_checkpoint_of_an_earlier_version_resumes_exactly(tmp_path, uninterrupted):
    """Earlier versions kept the best accuracy under a key of its own (``best_test_acc``);
    the resume takes the best from the epoch records, so such a run continues as it was."""
    out = tmp_path / "run"
    assert stop_run(out, "SIGTERM", 1, 15).returncode == 128 + 15  # latest.pt: epoch 2
    latest, best = out / "checkpoints" / "latest.pt", out / "checkpoints" / "best.pt"
    state = load_checkpoint(latest)
    assert "best_acc" not in state  # the records are the one source of the best
    state["best_test_acc"] = max(row["test_acc"] for row in state["epochs"])
    save_checkpoint(latest, state)
    best.unlink()  # rewritten by the resume, at the records' best epoch
    resumed = run_cli("train", str(QUICKSTART), "--out", str(out), "--resume", *SHORT_SETS)
    assert resumed.returncode == 0, resumed.stderr
    final = json.loads((out / "metrics.json").read_text())
    assert epochs_without_time(final) == epochs_without_time(uninterrupted)
    assert final["best_test_acc"] == uninterrupted["best_test_acc"]
    top = max(final["epochs"], key=lambda row: row["test_acc"])["epoch"]
    assert load_checkpoint(best)["epoch"] == top


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
    torch.load(latest, weights_only=True)  # torch alone does not notice
    with pytest.raises(CheckpointError, match="damaged: its SHA-256 does not match"):
        load_checkpoint(latest)
    sidecar = (ckpt / "latest.pt.sha256").read_text()
    (ckpt / "best.pt").write_bytes(b"garbage")
    logs = []
    resumed = train(load_recipe(QUICKSTART, TINY), out, resume=True, log=logs.append)
    assert f"resuming from {ckpt / 'previous.pt'} (epoch 1) instead" in logs[0]
    assert epochs_without_time(resumed) == epochs_without_time(whole)
    assert load_checkpoint(ckpt / "best.pt")["epoch"] >= 1  # rewritten
    # the damaged files were moved aside (with their digests), and the log said so
    for name in ("latest.pt", "best.pt"):
        assert f"moved the damaged {name} aside to {ckpt / name}.damaged" in logs
    assert (ckpt / "latest.pt.damaged").read_bytes() == data
    assert (ckpt / "best.pt.damaged").read_bytes() == b"garbage"
    moved = (ckpt / "latest.pt.damaged.sha256").read_text()
    assert moved == sidecar.replace("latest.pt", "latest.pt.damaged")
    # the next save wrote a good latest.pt, its sidecar listing its digest alone
    assert load_checkpoint(latest)["epoch"] == 2
    digest = hashlib.sha256(latest.read_bytes()).hexdigest()
    assert (ckpt / "latest.pt.sha256").read_text() == f"{digest}  latest.pt\n"
    latest.write_bytes(latest.read_bytes()[:1000])  # truncated
    for name in ("previous.pt", "best.pt"):
        (ckpt / name).write_bytes(b"garbage")
    with pytest.raises(TrainingError) as err:
        train(load_recipe(QUICKSTART, TINY), out, resume=True, log=quiet)
    assert f"no valid checkpoint left in {ckpt}" in str(err.value)
    assert "Start again with another --out" in str(err.value)


class Payload:
    """Pickles as ``open(marker, "w")``: unpickling it creates the file ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("sidecar", [False, True])
def test_a_planted_pickle_is_refused_and_never_runs(tmp_path, capsys, sidecar):
    marker, planted = tmp_path / "payload-ran", tmp_path / "model.pt"
    torch.save({"model": {}, "epoch": 1, "recipe": {}, "extra": Payload(marker)}, planted)
    if sidecar:  # a digest that matches: it vouches for the bytes, not for their safety
        digest = hashlib.sha256(planted.read_bytes()).hexdigest()
        (tmp_path / "model.pt.sha256").write_text(f"{digest}  model.pt\n")
    args = ["eval", str(QUICKSTART), "--checkpoint", str(planted), "--out", str(tmp_path)]
    assert main([*args, "--set", "train.device=cpu"]) == 1
    err = capsys.readouterr().err
    assert f"checkpoint {planted} is refused: besides tensors and plain data it holds" in err
    assert "loading them could run any code" in err
    with pytest.raises(CheckpointError, match="made elsewhere or tampered with"):
        load_checkpoint(planted)
    assert not marker.exists()
    torch.load(planted, weights_only=False)  # the payload is live: an unchecked load runs it
    assert marker.exists()


def test_a_checkpoint_of_an_older_sj_ext_is_refused_saying_why(tmp_path):
    old = tmp_path / "latest.pt"  # numpy's random state as the previous code saved it
    torch.save({"model": {}, "epoch": 1, "recipe": {}, "rng": np.random.get_state()}, old)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(old)
    message = str(err.value)
    assert f"checkpoint {old} is refused" in message and "numpy" in message
    assert "An older sj-ext kept numpy's random state this way" in message


def test_the_random_states_survive_a_checkpoint(tmp_path):
    np.random.standard_normal()  # numpy now holds a cached Gaussian: part of its state
    state = {"model": {}, "epoch": 0, "recipe": {}, "rng": rng_state()}
    expected = random.random(), np.random.standard_normal(), np.random.random(), torch.rand(3)
    save_checkpoint(tmp_path / "c.pt", state)
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])
    drawn = random.random(), np.random.standard_normal(), np.random.random(), torch.rand(3)
    assert drawn[:3] == expected[:3] and torch.equal(drawn[3], expected[3])


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
        [*cmd, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=PROCESS_ENV,
        timeout=300,
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
    script = HELPERS / "kill_rank.py"
    args = ["train", QUICKSTART, "--out", out, "--resume", "auto", *DDP_SETS]
    r = torchrun(script, marker, "2", "--", *args, restarts=1)
    assert r.returncode == 0, r.stderr[-3000:]
    assert marker.is_file()  # the kill happened
    assert "resuming" in r.stdout and "after epoch 1" in r.stdout
    final = json.loads((out / "metrics.json").read_text())
    whole = json.loads((ddp_run[0] / "metrics.json").read_text())
    assert epochs_without_time(final) == epochs_without_time(whole)


@needs_torchrun
def test_resuming_a_ddp_run_in_one_process_says_what_changes(tmp_path, ddp_run):
    out = tmp_path / "run"
    shutil.copytree(ddp_run[0], out)
    logs = []
    sets = [s for s in DDP_SETS if s != "--set"]
    train(load_recipe(QUICKSTART, sets), out, resume=True, log=logs.append)  # nothing left
    assert (
        "note: resuming with 1 process(es) instead of 2: the effective batch size is now 64, "
        "not 128 (data.batch_size 64 per process), and an epoch still takes 3"
    ) in logs[1]


def test_resume_changes_name_the_steps_per_epoch_and_the_schedule():
    recipe = load_recipe(QUICKSTART, ["train.device=cpu", "train.epochs=12"])
    state = {"world_size": 2, "recipe": load_recipe(QUICKSTART, ["train.device=cpu"])}
    # the digits' 1437 training images in batches of 64: 23 batches, 12 on each of 2 processes
    world_size, schedule = resume_changes(state, recipe, 1437, DistInfo())
    assert "an epoch takes 23 optimizer steps, not 12; " in world_size
    assert "the schedule keeps its shape over 23 steps of 64 samples" in world_size
    assert schedule == (
        "train.epochs changes from 10 to 12: the learning-rate schedule (cosine) is "
        "recomputed over 12 epochs"
    )


@pytest.mark.parametrize(
    "n,batch,world,limit",
    [(1437, 64, 1, None), (1437, 64, 2, None), (1437, 64, 3, 5), (10, 4, 4, None)],
)
def test_steps_per_epoch_is_what_the_loaders_give(n, batch, world, limit):
    loader = DataLoader(
        range(n), batch_size=batch, sampler=DistributedSampler(range(n), world, rank=0)
    )
    expected = len(loader) if limit is None else min(limit, len(loader))
    assert steps_per_epoch(n, batch, world, limit) == expected


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
    from sj_ext.app.engine.runfolder import refuse_incompatible

    recipe = load_recipe(QUICKSTART, ["train.device=cpu"])
    saved = json.loads(json.dumps(recipe))
    del saved["train"]["channels_last"], saved["data"]["train_samples"]  # an older run
    refuse_incompatible(saved, recipe, tmp_path / "latest.pt")  # defaults: accepted
    changed = load_recipe(QUICKSTART, ["train.device=cpu", "data.train_samples=100"])
    with pytest.raises(TrainingError, match=r"data.train_samples: '<absent>' -> 100|None -> 100"):
        refuse_incompatible(saved, changed, tmp_path / "latest.pt")


def test_resume_with_fewer_epochs_than_done_exits_2_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    train(load_recipe(QUICKSTART, TINY), out, log=quiet)  # 2 epochs
    ckpt = out / "checkpoints"
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    sets = [a for s in [*TINY, "train.epochs=1"] for a in ("--set", s)]
    assert main(["train", str(QUICKSTART), "--out", str(out), "--resume", *sets]) == 2
    assert (
        f"{ckpt / 'latest.pt'}: train.epochs: 1 is below the 2 epochs this run has already "
        "done; set train.epochs to 2 or more to continue it"
    ) in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == before


def test_resume_without_a_checkpoint_leaves_no_folder_behind(tmp_path):
    with pytest.raises(TrainingError, match="--resume: there is no run folder"):
        train(load_recipe(QUICKSTART, TINY), tmp_path / "new" / "run", resume=True, log=quiet)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "mine").mkdir()  # a folder that was there stays
    with pytest.raises(TrainingError, match="--resume: no checkpoint"):
        train(load_recipe(QUICKSTART, TINY), tmp_path / "mine", resume=True, log=quiet)
    assert list(tmp_path.iterdir()) == [tmp_path / "mine"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    train(load_recipe(QUICKSTART, TINY), out, log=quiet)
    return out / "checkpoints" / "latest.pt"


QUICKSTART_MODEL = (
    "model 'small_cnn' {'channels': 32, 'image_size': 8} with neuron 'adaptive_lif' "
    "{'tau': 1.25, 'decay_input': False, 'learnable_tau': True}"
)


@pytest.mark.parametrize(
    "sets,builds,mismatch",
    [
        (  # the conv, the 4 BatchNorm tensors and the read-out's weight change shape
            ["model.args.channels=16"],
            QUICKSTART_MODEL.replace("32", "16"),
            "6 of 10 state_dict keys do not match (0 missing from the checkpoint, "
            "0 unexpected, 6 of another shape)",
        ),
        (  # a LIF has no learnable decay (w) and no running thresholds
            ["neuron.name=lif", "neuron.args={}"],
            "model 'small_cnn' {'channels': 32, 'image_size': 8} with neuron 'lif' {}",
            "2 of 10 state_dict keys do not match (0 missing from the checkpoint, "
            "2 unexpected, 0 of another shape)",
        ),
    ],
)
def test_eval_with_another_recipes_checkpoint_names_both_models_and_exits_2(
    tiny_checkpoint, tmp_path, capsys, sets, builds, mismatch
):
    args = ["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path)]
    overrides = [a for s in ["train.device=cpu", *sets] for a in ("--set", s)]
    assert main(["eval", str(QUICKSTART), *args, *overrides]) == 2
    err = capsys.readouterr().err
    assert (
        f"{tiny_checkpoint}: the checkpoint holds {QUICKSTART_MODEL}; the recipe builds "
        f"{builds}: {mismatch}. Evaluate it with the recipe of its run"
    ) in err
    assert not (tmp_path / "eval.json").exists()


def test_the_learning_rate_follows_the_schedule_at_every_optimizer_step(monkeypatch, tmp_path):
    """One epoch of cosine decays within the epoch: step i of n uses the cosine at i / n."""
    seen = []
    real_step = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    sets = ["train.device=cpu", "train.epochs=2", "train.limit_train_batches=4",
            "optim.name=sgd", "optim.lr=0.2", "monitor.every=null"]  # fmt: skip
    metrics = train(load_recipe(QUICKSTART, sets), tmp_path / "run", log=lambda *a: None)
    progress = [e + i / 4 for e in range(2) for i in range(4)]
    expected = [0.2 * 0.5 * (1 + math.cos(math.pi * p / 2)) for p in progress]
    assert seen == pytest.approx(expected, rel=1e-12)
    assert [row["lr"] for row in metrics["epochs"]] == pytest.approx([0.2, 0.1])


def long_functions(folder: Path, limit: int) -> list[str]:
    """``path:line name (N lines)`` of each function under ``folder`` longer than ``limit``
    lines, counted from its ``def`` line to its last (docstring included)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    where = path.relative_to(folder.parent)
                    found.append(f"{where}:{node.lineno} {node.name} ({lines} lines)")
    return found


@pytest.mark.parametrize("package", [engine, fused_lif], ids=lambda p: p.__name__)
def test_no_function_of_the_engine_or_the_fused_kernels_is_over_50_lines(package):
    """The training loop and the fused operators are named steps, none over 50 lines."""
    folder = Path(package.__file__).parent
    assert long_functions(folder, 5), "the count sees no function at all"
    assert long_functions(folder, 50) == []
