"""The training engine: a resolved recipe -> a trained, checkpointed, resumable run.

The engine knows no particular method: everything it builds comes from the
registries (:mod:`sj_ext.registry`) by the names in the recipe (:mod:`.build`).

Run folder layout::

    OUT/recipe.yaml              the resolved recipe
    OUT/metrics.json             {"epochs": [...], "best_test_acc", "final_test_acc",
                                  "final_per_class_acc"}; each epoch record has
                                 "test_acc", "per_class_acc" (C floats, null: no sample)
    OUT/checkpoints/latest.pt    model, optimizer, scaler, epoch, RNG states,
    OUT/checkpoints/best.pt      the epoch records, the recipe and the process count (also
                                 previous.pt, and a .sha256 per checkpoint: see
                                 :mod:`.runfolder`); tensors and plain data only
                                 (:mod:`.checkpoint`)
    OUT/.lock                    held by the process writing the folder
    OUT/tb/                      TensorBoard events
    OUT/monitor/<name>.jsonl     monitor records (``monitor.every`` set; see :mod:`sj_ext.monitor`)
"""

import math
import signal
import time
from pathlib import Path

import torch
import torch.nn as nn
import yaml
from spikingjelly.activation_based import functional
from torch.nn.utils import get_total_norm
from torch.utils.data import DataLoader, DistributedSampler, Subset, default_collate

from ..class_health import accuracy_warnings
from ..monitor import Monitor
from ..neuron import sync_threshold_stats
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
from .errors import Preempted, TrainingError
from .runfolder import RecipeMismatch, RunFolder
from .signals import StopSignals

__all__ = ["TrainingError", "Preempted", "Run", "build_run", "train", "evaluate_checkpoint"]


@torch.no_grad()
def evaluate(model, recipe, data, device, info) -> tuple[float, int, list[float | None]]:
    """Test accuracy over the test set, split across processes: ``(acc, count, per_class)``.

    ``acc`` = correct / count over all processes; ``per_class[c]`` = correct / count
    over the samples of class ``c`` (``data.num_classes`` entries; ``None`` for a class
    with no test sample evaluated).
    """
    model.eval()
    test = data.test
    if info.enabled:
        test = Subset(test, range(info.rank, len(test), info.world_size))
    loader = DataLoader(
        test, batch_size=recipe["data"]["batch_size"], num_workers=recipe["data"]["num_workers"]
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
    """The first ``data.batch_size`` test samples, time-major (read without a loader: no RNG)."""
    test = run.data.test
    x, _ = default_collate([test[i] for i in range(min(recipe["data"]["batch_size"], len(test)))])
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


def set_lr(run: Run, recipe: dict, progress: float) -> float:
    """Set every parameter group's rate to ``optim.lr`` times the schedule at ``progress``
    (in epochs, fractional); return it."""
    lr = recipe["optim"]["lr"] * run.schedule(progress)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    return lr


def _train_epoch(run, model, recipe, device, info, epoch, scaler, progress, monitor, stop):
    model.train()
    t = recipe["train"]
    loader = _train_loader(run, recipe, info, epoch)
    limit = t["limit_train_batches"]
    n_batches = len(loader) if limit is None else min(limit, len(loader))
    loss_sum = correct = total = 0.0
    start = time.perf_counter()
    bar = progress(total=n_batches, desc=f"epoch {epoch + 1}/{t['epochs']}", leave=False)
    for i, (x, y) in enumerate(loader):
        if i >= n_batches:
            break
        x, y = x.to(device), y.to(device)
        set_lr(run, recipe, epoch + i / n_batches)
        sampled = monitor is not None and monitor.begin(epoch + 1, i, n_batches)
        with autocast(recipe, device):
            out = model(time_major_input(x, recipe, run.data))
            where = f"epoch {epoch + 1}, batch {i + 1}"
            loss = _checked_loss(run, out, y, info, device, stop, where)
        run.optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if t["grad_clip"] is not None:
            scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
        scaler.step(run.optimizer)
        scaler.update()
        _check_step(run, info, device, where)
        if sampled:
            monitor.end()
        functional.reset_net(model)
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
    loss_sum, correct, total = distributed.all_reduce_sum([loss_sum, correct, total], info, device)
    _average_buffers(model, info, device)
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
    folder.reconcile(state, _metrics(state["epochs"], state["best_test_acc"]))
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
    t = recipe["train"]
    out_dir = folder.out
    monitor = writer = None
    try:
        device = pick_device(t["device"], info)
        seed_everything(recipe["seed"])
        run = build_run(recipe, device)
        model = run.model
        scaler = torch.amp.GradScaler(
            "cuda", enabled=t["amp"] == "float16" and device.type == "cuda"
        )
        records, best_acc, start_epoch = [], -1.0, 0
        if resume:
            state = _restore(run, scaler, folder, recipe)
            records, best_acc, start_epoch = state["epochs"], state["best_test_acc"], state["epoch"]
            log(f"resuming {out_dir} after epoch {start_epoch}")
            for change in resume_changes(state, recipe, len(run.data.train), info):
                log(f"note: {change}")
        m = recipe["monitor"]
        if m["every"] is not None:
            monitor = Monitor(
                run.model,
                run.loss,
                names=m["names"],
                every=m["every"],
                out_dir=out_dir / "monitor",
                reach_eps=m["reach_eps"],
                write=info.is_main,
            )
            monitor.keep_epochs(start_epoch)
        if info.enabled:
            if t["sync_threshold_stats"]:
                sync_threshold_stats(model)
            model = nn.parallel.DistributedDataParallel(
                model,
                device_ids=[device.index] if device.type == "cuda" else None,
                broadcast_buffers=False,  # buffers are averaged at the end of every epoch
            )
        if info.is_main:
            folder.ckpt.mkdir(parents=True, exist_ok=True)
            (out_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out_dir / "tb"), purge_step=start_epoch + 1)
        progress = _progress_factory(info)
        for epoch in range(start_epoch, t["epochs"]):
            start = time.perf_counter()
            row = {"epoch": epoch + 1, "lr": set_lr(run, recipe, epoch)}
            try:
                row.update(
                    _train_epoch(
                        run, model, recipe, device, info, epoch, scaler, progress, monitor, stop
                    )
                )
                _check_state(run, epoch + 1)
            except Preempted as e:
                raise Preempted(
                    f"{e}; that epoch is dropped. Last good checkpoint: {folder.last_good()}",
                    e.signum,
                ) from e
            except TrainingError as e:
                raise TrainingError(
                    f"{e}; the run stopped. Last good checkpoint: {folder.last_good()}"
                ) from e
            row["test_acc"], row["test_samples"], row["per_class_acc"] = evaluate(
                model, recipe, run.data, device, info
            )
            alerts = accuracy_warnings(row["per_class_acc"], f"epoch {epoch + 1}: ")
            if monitor is not None:
                monitor.epoch_end(epoch + 1, lambda: _energy_input(run, recipe, device))
                alerts += monitor.class_warnings(epoch + 1)
            for warning in alerts:
                log(f"warning: {warning}")
            row["seconds"] = time.perf_counter() - start
            records.append(row)
            improved = row["test_acc"] > best_acc
            best_acc = max(best_acc, row["test_acc"])
            log(
                f"epoch {epoch + 1}/{t['epochs']}: loss {row['train_loss']:.4f} "
                f"train acc {row['train_acc']:.4f} test acc {row['test_acc']:.4f} "
                f"({row['seconds']:.1f} s)"
            )
            state = _checkpoint(run, scaler, recipe, records, best_acc, info)
            folder.save(state, improved, _metrics(records, best_acc))
            if writer is not None:
                for key in ("train_loss", "train_acc", "test_acc", "lr"):
                    writer.add_scalar(key, row[key], epoch + 1)
                writer.flush()
        return _metrics(records, best_acc)
    finally:
        if writer is not None:
            writer.close()
        if monitor is not None:
            monitor.close()


def _checkpoint(run: Run, scaler, recipe: dict, records: list[dict], best_acc: float, info) -> dict:
    """Everything a resume needs, after the epoch ``records[-1]``."""
    return {
        "model": run.model.state_dict(),
        "loss": run.loss.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": records[-1]["epoch"],
        "epochs": records,
        "best_test_acc": best_acc,
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


def _metrics(records: list[dict], best_acc: float) -> dict:
    return {
        "epochs": records,
        "best_test_acc": best_acc if records else None,
        "final_test_acc": records[-1]["test_acc"] if records else None,
        "final_per_class_acc": records[-1].get("per_class_acc") if records else None,
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
