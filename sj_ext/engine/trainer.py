"""The training engine: a resolved recipe -> a trained, checkpointed, resumable run.

The engine knows no particular method: everything it builds comes from the
registries (:mod:`sj_ext.registry`) by the names in the recipe.

Run folder layout::

    OUT/recipe.yaml              the resolved recipe
    OUT/metrics.json             {"epochs": [...], "best_test_acc", "final_test_acc"}
    OUT/checkpoints/latest.pt    model, optimizer, scheduler, scaler, epoch, RNG states,
    OUT/checkpoints/best.pt      the epoch records and the recipe
    OUT/tb/                      TensorBoard events
    OUT/monitor/<name>.jsonl     monitor records (``monitor.every`` set; see :mod:`sj_ext.monitor`)
"""

import inspect
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import yaml
from spikingjelly.activation_based import functional
from torch.utils.data import DataLoader, DistributedSampler, Subset, default_collate

from ..data import DataSpec, encode, to_time_major
from ..models.layout import to_channels_last
from ..monitor import Monitor
from ..neuron import sync_threshold_stats
from ..recipe import RESUMABLE_CHANGES, flatten
from ..registry import DATASETS, LOSSES, MODELS, NEURONS, OPTIMIZERS, SCHEDULES, SURROGATES
from . import distributed
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, write_json

__all__ = ["TrainingError", "Run", "build_run", "train", "evaluate_checkpoint"]


class TrainingError(RuntimeError):
    """A run cannot go on (non-finite loss, incompatible resume, ...)."""


def _call(fn, supplied: dict, args: dict):
    """Call ``fn(**args)`` plus the engine-supplied arguments ``fn`` names."""
    params = inspect.signature(fn).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return fn(**{k: v for k, v in supplied.items() if takes_all or k in params}, **args)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str, info: distributed.DistInfo) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device is 'cuda' but CUDA is not available here")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    torch.cuda.set_device(info.local_rank)
    return torch.device("cuda", info.local_rank)


def neuron_factory(recipe: dict):
    """A factory of neurons configured as the recipe says.

    ``make(**overrides)`` builds a fresh neuron (and surrogate); a model passes
    ``overrides`` for what it sets per layer (e.g. ``window='dilated'``).
    """
    spec = recipe["neuron"]
    cls = NEURONS.get(spec["name"])
    sg = spec["surrogate"]

    def make(**overrides):
        supplied = {"step_mode": "m", "backend": spec["backend"]}
        if sg["name"] is not None:
            supplied["surrogate_function"] = SURROGATES.build(sg["name"], **sg["args"])
        return _call(cls, supplied, {**spec["args"], **overrides})

    return make


@dataclass
class Run:
    """Everything a recipe builds."""

    data: DataSpec
    model: nn.Module
    loss: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler


def build_run(recipe: dict, device: torch.device) -> Run:
    d = recipe["data"]
    data = DATASETS.build(d["name"], root=d["root"], T=d["T"], **d["args"])
    model = _call(
        MODELS.get(recipe["model"]["name"]),
        {
            "num_classes": data.num_classes,
            "in_channels": data.in_channels,
            "spiking_neuron": neuron_factory(recipe),
        },
        recipe["model"]["args"],
    )
    functional.set_step_mode(model, "m")
    memory_format(model.to(device), recipe)
    loss = _call(
        LOSSES.get(recipe["loss"]["name"]),
        {"num_classes": data.num_classes},
        recipe["loss"]["args"],
    ).to(device)
    o = recipe["optim"]
    optimizer = OPTIMIZERS.build(
        o["name"], model.parameters(), lr=o["lr"], weight_decay=o["weight_decay"], **o["args"]
    )
    s = recipe["schedule"]
    scheduler = SCHEDULES.build(
        s["name"],
        optimizer,
        epochs=recipe["train"]["epochs"],
        warmup_epochs=s["warmup_epochs"],
        **s["args"],
    )
    return Run(data, model, loss, optimizer, scheduler)


def memory_format(obj, recipe: dict):
    """The model or an input in the recipe's memory format (``train.channels_last``)."""
    return to_channels_last(obj) if recipe["train"]["channels_last"] else obj


def time_major_input(x: torch.Tensor, recipe: dict, data: DataSpec) -> torch.Tensor:
    if data.layout == "static":
        x = encode(x, recipe["data"]["T"], recipe["data"]["encoding"])
    else:
        x = to_time_major(x)
    return memory_format(x, recipe)


def decode(out: torch.Tensor) -> torch.Tensor:
    """Class scores ``[N, C]`` from per-step outputs ``[T, N, C]`` (mean over T)."""
    return out.mean(0) if out.dim() == 3 else out


def _autocast(recipe: dict, device: torch.device):
    amp = recipe["train"]["amp"]
    enabled = amp is not None and device.type == "cuda"
    dtype = getattr(torch, amp) if enabled else None
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)


@torch.no_grad()
def evaluate(model, recipe, data, device, info) -> tuple[float, int]:
    """Test accuracy (fraction) over the test set, split across processes; and the count."""
    model.eval()
    test = data.test
    if info.enabled:
        test = Subset(test, range(info.rank, len(test), info.world_size))
    loader = DataLoader(
        test, batch_size=recipe["data"]["batch_size"], num_workers=recipe["data"]["num_workers"]
    )
    limit = recipe["train"]["limit_eval_batches"]
    correct = total = 0
    for i, (x, y) in enumerate(loader):
        if limit is not None and i >= limit:
            break
        x, y = x.to(device), y.to(device)
        with _autocast(recipe, device):
            out = model(time_major_input(x, recipe, data))
        functional.reset_net(model)
        correct += (decode(out).argmax(1) == y).sum().item()
        total += len(y)
    correct, total = distributed.all_reduce_sum([correct, total], info, device)
    return correct / max(total, 1), int(total)


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


def _train_epoch(run, model, recipe, device, info, epoch, scaler, progress, monitor) -> dict:
    model.train()
    d, t = recipe["data"], recipe["train"]
    if info.enabled:
        sampler = DistributedSampler(run.data.train, shuffle=True, seed=recipe["seed"])
        sampler.set_epoch(epoch)
        loader = DataLoader(
            run.data.train, d["batch_size"], sampler=sampler, num_workers=d["num_workers"]
        )
    else:
        generator = torch.Generator().manual_seed(recipe["seed"] * 100_003 + epoch)
        loader = DataLoader(
            run.data.train,
            d["batch_size"],
            shuffle=True,
            generator=generator,
            num_workers=d["num_workers"],
        )
    limit = t["limit_train_batches"]
    n_batches = len(loader) if limit is None else min(limit, len(loader))
    loss_sum = correct = total = 0.0
    start = time.perf_counter()
    bar = progress(total=n_batches, desc=f"epoch {epoch + 1}/{t['epochs']}", leave=False)
    for i, (x, y) in enumerate(loader):
        if i >= n_batches:
            break
        x, y = x.to(device), y.to(device)
        sampled = monitor is not None and monitor.begin(epoch + 1, i, n_batches)
        with _autocast(recipe, device):
            out = model(time_major_input(x, recipe, run.data))
            loss = run.loss(out, y)
        bad = distributed.all_reduce_sum([float(not torch.isfinite(loss))], info, device)[0]
        if bad:
            raise TrainingError(
                f"non-finite training loss ({loss.item()}) at epoch {epoch + 1}, batch {i + 1}"
                + (f" on {int(bad)} process(es)" if info.enabled else "")
            )
        run.optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if t["grad_clip"] is not None:
            scaler.unscale_(run.optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"])
        scaler.step(run.optimizer)
        scaler.update()
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


def _refuse_incompatible(saved: dict, recipe: dict, path: Path) -> None:
    old, new = flatten(saved), flatten(recipe)
    differing = sorted(
        k
        for k in old.keys() | new.keys()
        if old.get(k, "<absent>") != new.get(k, "<absent>") and k not in RESUMABLE_CHANGES
    )
    if differing:
        details = "; ".join(
            f"{k}: {old.get(k, '<absent>')!r} -> {new.get(k, '<absent>')!r}" for k in differing
        )
        raise TrainingError(
            f"cannot resume {path}: the recipe changed incompatibly ({details}). "
            f"Only {', '.join(RESUMABLE_CHANGES)} may change on --resume."
        )


def _progress_factory(info):
    from tqdm.auto import tqdm

    def progress(**kwargs):
        return tqdm(disable=None if info.is_main else True, **kwargs)

    return progress


def train(recipe: dict, out_dir: str | Path, resume: bool = False, log=print) -> dict:
    """Train as ``recipe`` says, writing into ``out_dir``; return the metrics.

    ``resume=True`` continues from ``out_dir/checkpoints/latest.pt``.
    """
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    latest, best = ckpt_dir / "latest.pt", ckpt_dir / "best.pt"
    t = recipe["train"]
    want_cuda = t["device"] == "cuda" or (t["device"] == "auto" and torch.cuda.is_available())
    info = distributed.setup("cuda" if want_cuda else "cpu")
    if not info.is_main:
        log = _quiet
    monitor = None
    try:
        device = pick_device(t["device"], info)
        if resume and not latest.is_file():
            raise TrainingError(f"--resume: no checkpoint at {latest}")
        if not resume and latest.is_file():
            raise TrainingError(
                f"{out_dir} already holds a run ({latest}); pass --resume to continue it "
                "or choose another --out"
            )
        seed_everything(recipe["seed"])
        run = build_run(recipe, device)
        model = run.model
        scaler = torch.amp.GradScaler(
            "cuda", enabled=t["amp"] == "float16" and device.type == "cuda"
        )
        records, best_acc, start_epoch = [], -1.0, 0
        if resume:
            state = load_checkpoint(latest)
            _refuse_incompatible(state["recipe"], recipe, latest)
            run.model.load_state_dict(state["model"])
            run.loss.load_state_dict(state["loss"])
            run.optimizer.load_state_dict(state["optimizer"])
            run.scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            records, best_acc, start_epoch = state["epochs"], state["best_test_acc"], state["epoch"]
            set_rng_state(state["rng"])
            log(f"resuming {out_dir} after epoch {start_epoch}")
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
        writer = None
        if info.is_main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out_dir / "tb"), purge_step=start_epoch + 1)
        progress = _progress_factory(info)
        for epoch in range(start_epoch, t["epochs"]):
            start = time.perf_counter()
            row = {"epoch": epoch + 1, "lr": run.optimizer.param_groups[0]["lr"]}
            try:
                row.update(
                    _train_epoch(run, model, recipe, device, info, epoch, scaler, progress, monitor)
                )
            except TrainingError as e:
                kept = f"{latest} (epoch {epoch})" if latest.is_file() else "none yet"
                raise TrainingError(f"{e}; the run stopped. Last good checkpoint: {kept}") from e
            row["test_acc"], row["test_samples"] = evaluate(model, recipe, run.data, device, info)
            if monitor is not None:
                monitor.epoch_end(epoch + 1, lambda: _energy_input(run, recipe, device))
            run.scheduler.step()
            row["seconds"] = time.perf_counter() - start
            records.append(row)
            improved = row["test_acc"] > best_acc
            best_acc = max(best_acc, row["test_acc"])
            log(
                f"epoch {epoch + 1}/{t['epochs']}: loss {row['train_loss']:.4f} "
                f"train acc {row['train_acc']:.4f} test acc {row['test_acc']:.4f} "
                f"({row['seconds']:.1f} s)"
            )
            if info.is_main:
                state = {
                    "model": run.model.state_dict(),
                    "loss": run.loss.state_dict(),
                    "optimizer": run.optimizer.state_dict(),
                    "scheduler": run.scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "epoch": epoch + 1,
                    "epochs": records,
                    "best_test_acc": best_acc,
                    "recipe": recipe,
                    "rng": rng_state(),
                }
                save_checkpoint(latest, state)
                if improved:
                    save_checkpoint(best, state)
                write_json(out_dir / "metrics.json", _metrics(records, best_acc))
                for key in ("train_loss", "train_acc", "test_acc", "lr"):
                    writer.add_scalar(key, row[key], epoch + 1)
                writer.flush()
        if writer is not None:
            writer.close()
        return _metrics(records, best_acc)
    finally:
        if monitor is not None:
            monitor.close()
        distributed.teardown(info)


def _quiet(*args, **kwargs):
    pass


def _metrics(records: list[dict], best_acc: float) -> dict:
    return {
        "epochs": records,
        "best_test_acc": best_acc if records else None,
        "final_test_acc": records[-1]["test_acc"] if records else None,
    }


def evaluate_checkpoint(recipe: dict, checkpoint: str | Path) -> dict:
    """Test accuracy of a saved checkpoint under ``recipe`` (single process)."""
    device = pick_device(recipe["train"]["device"], distributed.DistInfo())
    seed_everything(recipe["seed"])
    run = build_run(recipe, device)
    state = load_checkpoint(checkpoint)
    run.model.load_state_dict(state["model"])
    acc, count = evaluate(run.model, recipe, run.data, device, distributed.DistInfo())
    if not math.isfinite(acc):
        raise TrainingError(f"evaluation of {checkpoint} gave {acc}")
    return {
        "checkpoint": str(checkpoint),
        "epoch": state["epoch"],
        "test_acc": acc,
        "test_samples": count,
    }
