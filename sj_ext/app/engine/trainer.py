"""The training engine: a resolved recipe -> a trained, checkpointed, resumable run.

The engine knows no particular method: everything it builds comes from the
registries (:mod:`sj_ext.registry`) by the names in the recipe (:mod:`.build`).

Run folder layout::

    OUT/recipe.yaml              the resolved recipe
    OUT/environment.json         versions, commit, device, threads, determinism flags,
                                 the command; checked at resume (:mod:`.environment`)
    OUT/metrics.json             {"epochs": [...], "best_test_acc", "best_val_acc",
                                  "final_test_acc", "final_per_class_acc"}; each epoch
                                 record has "test_acc", "test_samples", "per_class_acc"
                                 (C floats, null: no sample), or with a validation split
                                 (``data.val_samples``) "val_acc", "val_samples",
                                 "val_per_class_acc", and the test keys in the last
                                 epoch only: the test set is read once, at the end
    OUT/checkpoints/latest.pt    model, optimizer, scaler, epoch, RNG states,
    OUT/checkpoints/best.pt      the epoch records, the recipe and the process count (also
                                 previous.pt, and a .sha256 per checkpoint: see
                                 :mod:`.runfolder`); tensors and plain data only
                                 (:mod:`.checkpoint`)
    OUT/.lock                    held by the process writing the folder
    OUT/tb/                      TensorBoard events
    OUT/monitor/<name>.jsonl     monitor records (``monitor.every`` set; :mod:`sj_ext.app.monitor`)
"""

import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import yaml
from spikingjelly.activation_based import functional
from torch.nn.utils import get_total_norm
from torch.utils.data import DataLoader, DistributedSampler, Subset, default_collate

from ...neuron import sync_threshold_stats
from ..class_health import accuracy_warnings
from ..monitor import Monitor
from ..runfiles import ACCURACY_NAMES, EVAL_KEYS, best_accuracy, evaluated_split
from . import distributed
from .build import (
    Run,
    autocast,
    build_run,
    decode,
    pick_device,
    seed_everything,
    time_major_input,
)
from .checkpoint import load_checkpoint, rng_state, set_rng_state
from .environment import record_environment
from .errors import Preempted, TrainingError
from .host_memory import keep_freed_memory
from .precise_bn import recompute_batch_norm
from .runfolder import RecipeMismatch, RunFolder
from .signals import StopSignals

__all__ = ["TrainingError", "Preempted", "Run", "build_run", "train", "evaluate_checkpoint"]


def eval_split(data) -> str:
    """The split every epoch of a run on ``data`` evaluates (:func:`evaluated_split`)."""
    return evaluated_split(data.val is not None)


@torch.no_grad()
def evaluate(
    model, recipe, data, device, info, split: str = "test"
) -> tuple[float, int, list[float | None]]:
    """Accuracy over ``data``'s ``split`` ('test' or 'val'), split across processes:
    ``(acc, count, per_class)``.

    ``acc`` = correct / count over all processes; ``per_class[c]`` = correct / count
    over the samples of class ``c`` (``data.num_classes`` entries; ``None`` for a class
    with no sample evaluated).
    """
    model.eval()
    dataset = getattr(data, split)
    if info.enabled:
        dataset = Subset(dataset, range(info.rank, len(dataset), info.world_size))
    loader = DataLoader(
        dataset, batch_size=recipe["data"]["batch_size"], num_workers=recipe["data"]["num_workers"]
    )
    limit = recipe["train"]["limit_eval_batches"]
    C = data.num_classes
    correct = torch.zeros(C, dtype=torch.long, device=device)
    seen = torch.zeros(C, dtype=torch.long, device=device)
    for i, (x, y) in enumerate(loader):
        if limit is not None and i >= limit:
            break
        x, y = x.to(device), y.to(device)
        with autocast(recipe, device):
            out = model(time_major_input(x, recipe, data))
        functional.reset_net(model)
        correct += torch.bincount(y[decode(out).argmax(1) == y], minlength=C)
        seen += torch.bincount(y, minlength=C)
    counts = distributed.all_reduce_sum(correct.tolist() + seen.tolist(), info, device)
    correct, seen = counts[:C], counts[C:]
    total = sum(seen)
    per_class = [c / n if n else None for c, n in zip(correct, seen, strict=True)]
    return sum(correct) / max(total, 1), int(total), per_class


def _average_buffers(model: nn.Module, info, device) -> None:
    """Average floating buffers (BN statistics, running thresholds) over processes."""
    if not info.enabled:
        return
    for buf in model.buffers():
        if buf.is_floating_point() and buf.numel():
            torch.distributed.all_reduce(buf)
            buf.div_(info.world_size)


def _energy_input(run: Run, recipe: dict, device: torch.device) -> torch.Tensor:
    """The first ``data.batch_size`` samples of the evaluated split (:func:`eval_split`),
    time-major (read without a loader: no RNG)."""
    samples = getattr(run.data, eval_split(run.data))
    n = min(recipe["data"]["batch_size"], len(samples))
    x, _ = default_collate([samples[i] for i in range(n)])
    return time_major_input(x.to(device), recipe, run.data)


def _train_loader(run: Run, recipe: dict, info, epoch: int) -> DataLoader:
    """This epoch's shuffled training batches (of this process's shard under DDP)."""
    d = recipe["data"]
    if info.enabled:
        sampler = DistributedSampler(run.data.train, shuffle=True, seed=recipe["seed"])
        sampler.set_epoch(epoch)
        return DataLoader(
            run.data.train, d["batch_size"], sampler=sampler, num_workers=d["num_workers"]
        )
    generator = torch.Generator().manual_seed(recipe["seed"] * 100_003 + epoch)
    return DataLoader(
        run.data.train,
        d["batch_size"],
        shuffle=True,
        generator=generator,
        num_workers=d["num_workers"],
    )


def _checked_loss(run: Run, out, y, info, device, stop: StopSignals, where: str):
    """The batch loss, once every process agrees that the step may go on.

    Every process stops alike, before the backward pass, for a signal
    (:class:`Preempted`), a non-finite model output or a non-finite (or refused)
    loss (:class:`TrainingError`).
    """
    on = " on {} process(es)" if info.enabled else ""
    n_bad = out.numel() - int(torch.isfinite(out).sum())
    bad_out, stops = distributed.all_reduce_sum(
        [float(n_bad > 0), float(stop.signum is not None)], info, device
    )
    if stops:
        signum = stop.signum or signal.SIGTERM
        raise Preempted(f"stopped by {signal.Signals(signum).name} during {where}", signum)
    if bad_out:
        raise TrainingError(
            f"non-finite model output ({n_bad} of {out.numel()} values) at {where}"
            + on.format(int(bad_out))
        )
    try:
        loss = run.loss(out, y)
        fault = None if torch.isfinite(loss) else f"non-finite training loss ({loss.item()})"
    except ValueError as e:  # a loss that checks its own inputs (e.g. non-finite per-sample)
        loss, fault = None, f"the loss refused the batch ({e})"
    bad = distributed.all_reduce_sum([float(fault is not None)], info, device)[0]
    if bad:
        raise TrainingError(f"{fault or 'a fault'} at {where}" + on.format(int(bad)))
    return loss


def learning_rate(run: Run, recipe: dict, progress: float) -> float:
    """``optim.lr`` times the schedule at ``progress`` (in epochs, fractional)."""
    return recipe["optim"]["lr"] * run.schedule(progress)


def set_lr(run: Run, recipe: dict, progress: float) -> float:
    """Set every parameter group's rate to :func:`learning_rate` at ``progress``; return it."""
    lr = learning_rate(run, recipe, progress)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    return lr


@dataclass
class _Training:
    """What the steps of one run share: set up by :func:`_start`, updated epoch by epoch."""

    recipe: dict
    folder: RunFolder
    info: distributed.DistInfo
    stop: StopSignals
    log: Callable[[str], None]
    device: torch.device | None = None
    run: Run | None = None
    model: nn.Module | None = None  # run.model, or its DistributedDataParallel wrapper
    scaler: torch.amp.GradScaler | None = None
    records: list[dict] = field(default_factory=list)
    start_epoch: int = 0
    monitor: Monitor | None = None
    writer: object = None  # the main process's TensorBoard SummaryWriter
    progress: Callable | None = None


def _optimizer_step(s: _Training, loss: torch.Tensor) -> None:
    """Backward, clip the gradients (``train.grad_clip``) and step, through the AMP scaler."""
    s.run.optimizer.zero_grad(set_to_none=True)
    s.scaler.scale(loss).backward()
    clip = s.recipe["train"]["grad_clip"]
    if clip is not None:
        s.scaler.unscale_(s.run.optimizer)
        nn.utils.clip_grad_norm_(s.model.parameters(), clip)
    s.scaler.step(s.run.optimizer)
    s.scaler.update()


def _train_step(s: _Training, x, y, epoch: int, i: int, n_batches: int):
    """One optimizer step on batch ``i`` of ``n_batches`` in ``epoch``: ``(loss, output)``.

    Recorded by the monitor when it samples the batch; stopped, every process
    alike, by a signal or a non-finite output, loss or state (:func:`_checked_loss`,
    :func:`_check_step`).
    """
    set_lr(s.run, s.recipe, epoch + i / n_batches)
    sampled = s.monitor is not None and s.monitor.begin(epoch + 1, i, n_batches)
    where = f"epoch {epoch + 1}, batch {i + 1}"
    with autocast(s.recipe, s.device):
        out = s.model(time_major_input(x, s.recipe, s.run.data))
        loss = _checked_loss(s.run, out, y, s.info, s.device, s.stop, where)
    _optimizer_step(s, loss)
    _check_step(s.run, s.info, s.device, where)
    if sampled:
        s.monitor.end()
    functional.reset_net(s.model)
    return loss, out


def _train_epoch(s: _Training, epoch: int) -> dict:
    """Train ``epoch`` on this process's batches; its loss, accuracy and samples (all processes)."""
    s.model.train()
    t, info = s.recipe["train"], s.info
    loader = _train_loader(s.run, s.recipe, info, epoch)
    limit = t["limit_train_batches"]
    n_batches = len(loader) if limit is None else min(limit, len(loader))
    loss_sum = correct = total = 0.0
    start = time.perf_counter()
    bar = s.progress(total=n_batches, desc=f"epoch {epoch + 1}/{t['epochs']}", leave=False)
    for i, (x, y) in enumerate(loader):
        if i >= n_batches:
            break
        x, y = x.to(s.device), y.to(s.device)
        loss, out = _train_step(s, x, y, epoch, i, n_batches)
        loss_sum += loss.item() * len(y)
        correct += (decode(out.detach()).argmax(1) == y).sum().item()
        total += len(y)
        bar.update(1)
        bar.set_postfix(
            loss=f"{loss_sum / total:.4f}",
            acc=f"{correct / total:.3f}",
            img_s=f"{total * info.world_size / (time.perf_counter() - start):.0f}",
        )
    bar.close()
    loss_sum, correct, total = distributed.all_reduce_sum(
        [loss_sum, correct, total], info, s.device
    )
    _average_buffers(s.model, info, s.device)
    return {
        "train_loss": loss_sum / max(total, 1),
        "train_acc": correct / max(total, 1),
        "train_samples": int(total),
    }


def _progress_factory(info):
    from tqdm.auto import tqdm

    def progress(**kwargs):
        return tqdm(disable=None if info.is_main else True, **kwargs)

    return progress


def _floating_state(run: Run):
    """``(name, tensor)`` for every non-empty floating tensor the model and loss save."""
    for owner, module in (("model", run.model), ("loss", run.loss)):
        for name, value in module.state_dict(keep_vars=True).items():
            if value.is_floating_point() and value.numel():
                yield f"{owner}.{name}", value


def _non_finite(run: Run) -> str:
    """The parameters and buffers holding NaN or inf, listed (the first four); '' if none."""
    bad = [name for name, value in _floating_state(run) if not torch.isfinite(value).all()]
    more = f" and {len(bad) - 4} more" if len(bad) > 4 else ""
    return ", ".join(bad[:4]) + more


def _check_step(run: Run, info, device, where: str) -> None:
    """Stop at the step that left NaN or inf in a parameter or buffer, every process alike.

    One fused reduction screens the step: the L2 norm of every tensor together (a fast
    reduction on every device, fused on GPUs) is finite unless a tensor holds NaN or inf,
    or finite values too large to square; only then is each tensor checked exactly, and
    those holding NaN or inf named. One sync per step.
    """
    norm = get_total_norm([value for _, value in _floating_state(run)], 2.0)
    names = "" if torch.isfinite(norm) else _non_finite(run)
    bad = distributed.all_reduce_sum([float(bool(names))], info, device)[0]
    if bad:
        on = f" on {int(bad)} process(es)" if info.enabled else ""
        raise TrainingError(f"non-finite values{f' in {names}' if names else ''} at {where}{on}")


def _check_state(run: Run, epoch: int) -> None:
    """Refuse to save NaN or inf in the model's or loss's parameters and buffers."""
    names = _non_finite(run)
    if names:
        raise TrainingError(f"non-finite values in {names} after epoch {epoch}")


def _restore(run: Run, scaler, folder: RunFolder, recipe: dict) -> dict:
    """Load the newest valid checkpoint into ``run`` and the RNGs; return it."""
    state = folder.load(recipe)
    run.model.load_state_dict(state["model"])
    run.loss.load_state_dict(state["loss"])
    run.optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    split = eval_split(run.data)
    folder.reconcile(state, _metrics(state["epochs"], split), split)
    return state


def train(recipe: dict, out_dir: str | Path, resume: bool | str = False, log=print) -> dict:
    """Train as ``recipe`` says, writing into ``out_dir``; return the metrics.

    ``resume=True`` continues from the newest valid checkpoint in ``out_dir``
    (:class:`~.runfolder.RunFolder`), logging what changes (:func:`resume_changes`);
    ``resume="auto"`` continues when there is one and starts the run otherwise
    (torchrun restarts, requeued jobs).

    :raises TrainingError: the run cannot go on; :class:`Preempted` for SIGTERM/SIGINT.
    :raises RecipeMismatch: a resume whose ``train.epochs`` is below the epochs done.
    """
    t = recipe["train"]
    want_cuda = t["device"] == "cuda" or (t["device"] == "auto" and torch.cuda.is_available())
    info = distributed.setup("cuda" if want_cuda else "cpu")
    if not info.is_main:
        log = _quiet
    with RunFolder(out_dir, info.is_main, log) as folder, StopSignals(info.is_main) as stop:
        metrics = _train(recipe, folder, folder.wants_resume(resume), info, stop, log)
    # after a failure, no teardown: it can wait forever for a process that went on, and
    # the process ends anyway (torchrun then stops the others)
    distributed.teardown(info)
    return metrics


def _train(recipe, folder: RunFolder, resume: bool, info, stop, log) -> dict:
    """Set the run up (resumed when ``resume``) and train its remaining epochs; the metrics."""
    s = _Training(recipe, folder, info, stop, log)
    try:
        _start(s, resume)
        for epoch in range(s.start_epoch, recipe["train"]["epochs"]):
            _run_epoch(s, epoch)
        return _metrics(s.records, eval_split(s.run.data))
    finally:
        if s.writer is not None:
            s.writer.close()
        if s.monitor is not None:
            s.monitor.close()


def _start(s: _Training, resume: bool) -> None:
    """Build the run on its device, resume it when asked, and open what the epochs write."""
    t = s.recipe["train"]
    s.device = pick_device(t["device"], s.info)
    if s.device.type == "cpu":
        keep_freed_memory()
    seed_everything(s.recipe["seed"])
    s.run = build_run(s.recipe, s.device)
    s.scaler = torch.amp.GradScaler(
        "cuda", enabled=t["amp"] == "float16" and s.device.type == "cuda"
    )
    if resume:
        _resume(s)
    elif getattr(s.run.loss, "can_be_negative", False):
        s.log(
            f"note: the {s.recipe['loss']['name']} loss can be negative (it rewards easy samples)"
        )
    _open_monitor(s)
    s.model = _trained_model(s)
    if s.info.is_main:
        _open_outputs(s)
    s.progress = _progress_factory(s.info)


def _resume(s: _Training) -> None:
    """Continue after the newest valid checkpoint, logging what the resume changes."""
    state = _restore(s.run, s.scaler, s.folder, s.recipe)
    s.records, s.start_epoch = state["epochs"], state["epoch"]
    s.log(f"resuming {s.folder.out} after epoch {s.start_epoch}")
    for change in resume_changes(state, s.recipe, len(s.run.data.train), s.info):
        s.log(f"note: {change}")


def _open_monitor(s: _Training) -> None:
    """The recipe's monitor (when ``monitor.every`` is set), its records cut to the epochs done."""
    m = s.recipe["monitor"]
    if m["every"] is None:
        return
    s.monitor = Monitor(
        s.run.model,
        s.run.loss,
        names=m["names"],
        every=m["every"],
        out_dir=s.folder.out / "monitor",
        reach_eps=m["reach_eps"],
        write=s.info.is_main,
    )
    s.monitor.keep_epochs(s.start_epoch)


def _trained_model(s: _Training) -> nn.Module:
    """The module the steps train: the model, or under DDP its wrapper (statistics synced)."""
    model = s.run.model
    if not s.info.enabled:
        return model
    if s.recipe["train"]["sync_threshold_stats"]:
        sync_threshold_stats(model)
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[s.device.index] if s.device.type == "cuda" else None,
        broadcast_buffers=False,  # buffers are averaged at the end of every epoch
    )


def _open_outputs(s: _Training) -> None:
    """The main process's checkpoint folder, resolved recipe and TensorBoard writer."""
    out = s.folder.out
    s.folder.ckpt.mkdir(parents=True, exist_ok=True)
    (out / "recipe.yaml").write_text(yaml.safe_dump(s.recipe, sort_keys=False))
    record_environment(out / "environment.json", s.device, s.start_epoch > 0, s.log)
    from torch.utils.tensorboard import SummaryWriter

    s.writer = SummaryWriter(str(out / "tb"), purge_step=s.start_epoch + 1)


def _run_epoch(s: _Training, epoch: int) -> None:
    """Epoch ``epoch`` (from 0): train, evaluate, warn, then record, log and checkpoint it.

    The epoch evaluates the validation split when the run has one, and the test set
    after the last epoch only; else the test set. The last epoch re-estimates the
    BatchNorm statistics first when ``train.precise_bn`` asks (:func:`_precise_bn`).
    """
    start = time.perf_counter()
    row = {"epoch": epoch + 1, "lr": learning_rate(s.run, s.recipe, epoch)}
    row.update(_train_or_stop(s, epoch))
    split = eval_split(s.run.data)
    last = epoch + 1 == s.recipe["train"]["epochs"]
    if last and s.recipe["train"]["precise_bn"]:
        row["precise_bn_batches"] = _precise_bn(s, epoch + 1)
    for name in [split] + (["test"] if split == "val" and last else []):
        scores = evaluate(s.model, s.recipe, s.run.data, s.device, s.info, name)
        row.update(zip(EVAL_KEYS[name], scores, strict=True))
    _epoch_warnings(s, epoch + 1, row[EVAL_KEYS[split][2]], split)
    row["seconds"] = time.perf_counter() - start
    _record(s, row, split)


def _precise_bn(s: _Training, epoch: int) -> int:
    """Re-estimate the BatchNorm statistics over ``train.precise_bn`` training batches, in
    the order of epoch ``epoch`` (fixed by the seed: a resumed run gets the same); under
    DDP over each process's shard, then averaged. Returns the batches used."""

    def forward(batch) -> None:
        with autocast(s.recipe, s.device):
            s.run.model(time_major_input(batch[0].to(s.device), s.recipe, s.run.data))
        functional.reset_net(s.run.model)

    loader = _train_loader(s.run, s.recipe, s.info, epoch)
    used = recompute_batch_norm(s.run.model, loader, forward, s.recipe["train"]["precise_bn"])
    _average_buffers(s.model, s.info, s.device)
    return used


def _train_or_stop(s: _Training, epoch: int) -> dict:
    """Train ``epoch`` and check the state it leaves; a stop names the last good checkpoint.

    :raises Preempted: a signal stopped the epoch, which is dropped
    :raises TrainingError: a non-finite value or a refused loss stopped the run
    """
    try:
        scores = _train_epoch(s, epoch)
        _check_state(s.run, epoch + 1)
    except Preempted as e:
        raise Preempted(
            f"{e}; that epoch is dropped. Last good checkpoint: {s.folder.last_good()}",
            e.signum,
        ) from e
    except TrainingError as e:
        raise TrainingError(
            f"{e}; the run stopped. Last good checkpoint: {s.folder.last_good()}"
        ) from e
    return scores


def _epoch_warnings(s: _Training, epoch: int, per_class: list[float | None], split: str) -> None:
    """Log the classes the epoch leaves behind; the monitor closes its epoch and adds its own."""
    alerts = accuracy_warnings(per_class, f"epoch {epoch}: ", ACCURACY_NAMES[split])
    if s.monitor is not None:
        s.monitor.epoch_end(epoch, lambda: _energy_input(s.run, s.recipe, s.device))
        alerts += s.monitor.class_warnings(epoch)
    for warning in alerts:
        s.log(f"warning: {warning}")


#: the accuracies an epoch record may hold, in the order the log and TensorBoard give them
_ACCURACIES = ("train_acc", "val_acc", "test_acc")


def _record(s: _Training, row: dict, split: str) -> None:
    """Keep the epoch's ``row``, log it, checkpoint the run and write its scalars.

    ``best.pt`` follows the accuracy on ``split``, the split every epoch evaluates.
    """
    best = best_accuracy(s.records, split)
    improved = best is None or row[EVAL_KEYS[split][0]] > best
    s.records.append(row)
    scores = " ".join(f"{k[:-4]} acc {row[k]:.4f}" for k in _ACCURACIES if k in row)
    s.log(
        f"epoch {row['epoch']}/{s.recipe['train']['epochs']}: {s.recipe['loss']['name']} loss "
        f"{row['train_loss']:.4f} {scores} ({row['seconds']:.1f} s)"
    )
    state = _checkpoint(s.run, s.scaler, s.recipe, s.records, s.info)
    s.folder.save(state, improved, _metrics(s.records, split))
    _write_scalars(s.writer, row)


def _write_scalars(writer, row: dict) -> None:
    """The epoch's losses, accuracies and rate in TensorBoard (the main process only)."""
    if writer is None:
        return
    for key in ("train_loss", *_ACCURACIES, "lr"):
        if key in row:
            writer.add_scalar(key, row[key], row["epoch"])
    writer.flush()


def _checkpoint(run: Run, scaler, recipe: dict, records: list[dict], info) -> dict:
    """Everything a resume needs, after the epoch ``records[-1]``."""
    return {
        "model": run.model.state_dict(),
        "loss": run.loss.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": records[-1]["epoch"],
        "epochs": records,
        "recipe": recipe,
        "rng": rng_state(),
        "world_size": info.world_size,
    }


def steps_per_epoch(n_train: int, batch_size: int, world_size: int, limit: int | None) -> int:
    """Optimizer steps in an epoch of ``n_train`` samples over ``world_size`` processes.

    ``DistributedSampler`` gives each process ``ceil(n_train / world_size)`` samples
    (padding the last), batched without dropping the last; ``limit`` caps the batches.
    """
    steps = math.ceil(math.ceil(n_train / world_size) / batch_size)
    return steps if limit is None else min(limit, steps)


def resume_changes(state: dict, recipe: dict, n_train: int, info) -> list[str]:
    """What resuming ``state`` under ``recipe`` and ``info`` changes in the training, in
    words: another process count (the effective batch size, the steps per epoch), another
    ``train.epochs`` (the learning-rate schedule)."""
    changes = []
    before, now = state.get("world_size", info.world_size), info.world_size
    if before != now:
        batch, limit = recipe["data"]["batch_size"], recipe["train"]["limit_train_batches"]
        old, new = (steps_per_epoch(n_train, batch, w, limit) for w in (before, now))
        steps = (
            f"takes {new} optimizer steps, not {old}"
            if new != old
            else f"still takes {new} optimizer steps"
        )
        changes.append(
            f"resuming with {now} process(es) instead of {before}: the effective batch size "
            f"is now {batch * now}, not {batch * before} (data.batch_size {batch} per "
            f"process), and an epoch {steps}; the learning rate follows the fraction of "
            f"the epoch done, so the schedule keeps its shape over {new} steps of "
            f"{batch * now} samples"
        )
    epochs = state["recipe"]["train"]["epochs"], recipe["train"]["epochs"]
    if epochs[0] != epochs[1]:
        changes.append(
            f"train.epochs changes from {epochs[0]} to {epochs[1]}: the learning-rate "
            f"schedule ({recipe['schedule']['name']}) is recomputed over {epochs[1]} epochs"
        )
    return changes


def _quiet(*args, **kwargs):
    pass


def _metrics(records: list[dict], split: str) -> dict:
    """``metrics.json``: the records; the best accuracy on ``split`` (the other best is null:
    with a validation split the test set has no best, being read once); the last epoch's
    test accuracy (null until a validation run's last epoch) and accuracy per class."""
    last = records[-1] if records else {}
    best = best_accuracy(records, split)
    return {
        "epochs": records,
        "best_test_acc": best if split == "test" else None,
        "best_val_acc": best if split == "val" else None,
        "final_test_acc": last.get("test_acc"),
        "final_per_class_acc": last.get("per_class_acc"),
    }


def _describe(recipe: dict) -> str:
    """The model a recipe builds, in words: its model and neuron, with their arguments."""
    model, neuron = recipe["model"], recipe["neuron"]
    return (
        f"model {model['name']!r} {model['args']} with neuron {neuron['name']!r} {neuron['args']}"
    )


def _mismatched_keys(model: nn.Module, saved: dict) -> dict[str, list[str]]:
    """The keys of ``saved`` that do not fit ``model``, by kind (loading each alone in turn:
    a module may accept another shape, as a neuron's ``running_threshold`` does)."""
    ours = model.state_dict().keys()

    def fits(key: str) -> bool:
        try:
            model.load_state_dict({key: saved[key]}, strict=False)
        except RuntimeError:
            return False
        return True

    return {
        "missing from the checkpoint": sorted(ours - saved.keys()),
        "unexpected": sorted(saved.keys() - ours),
        "of another shape": sorted(k for k in ours & saved.keys() if not fits(k)),
    }


def _load_model(model: nn.Module, state: dict, recipe: dict, checkpoint) -> None:
    """``state``'s weights into ``model``, built from ``recipe``.

    :raises RecipeMismatch: the weights do not fit (keys missing, unexpected, of another
        shape), naming the model the checkpoint holds and the one ``recipe`` builds.
    """
    saved = state["model"]
    try:
        model.load_state_dict(saved)
    except RuntimeError as e:
        mismatched = _mismatched_keys(model, saved)
        count = sum(map(len, mismatched.values()))
        if not count:
            raise
        kinds = ", ".join(f"{len(keys)} {kind}" for kind, keys in mismatched.items())
        raise RecipeMismatch(
            str(checkpoint),
            [
                f"the checkpoint holds {_describe(state['recipe'])}; the recipe builds "
                f"{_describe(recipe)}: {count} of {len(model.state_dict().keys() | saved.keys())} "
                f"state_dict keys do not match ({kinds}). Evaluate it with the recipe of its run"
            ],
        ) from e


def evaluate_checkpoint(recipe: dict, checkpoint: str | Path) -> dict:
    """Test accuracy of a saved checkpoint under ``recipe`` (single process).

    :raises RecipeMismatch: the checkpoint holds another model than ``recipe`` builds.
    """
    state = load_checkpoint(checkpoint)
    device = pick_device(recipe["train"]["device"], distributed.DistInfo())
    seed_everything(recipe["seed"])
    run = build_run(recipe, device)
    _load_model(run.model, state, recipe, checkpoint)
    acc, count, per_class = evaluate(run.model, recipe, run.data, device, distributed.DistInfo())
    if not math.isfinite(acc):
        raise TrainingError(f"evaluation of {checkpoint} gave {acc}")
    return {
        "checkpoint": str(checkpoint),
        "epoch": state["epoch"],
        "test_acc": acc,
        "test_samples": count,
        "per_class_acc": per_class,
    }
