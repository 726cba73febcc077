"""The training engine: a resolved recipe -> a trained, checkpointed, resumable run.

The engine knows no particular method: everything it builds comes from the
registries (:mod:`sj_ext.app.components`) by the names in the recipe (:mod:`.build`).
:class:`Trainer` holds the training procedure, top to bottom; the other concerns
have their modules: evaluation (:mod:`.evaluate`), the step guards (:mod:`.guards`),
the epoch records and checkpoint contents (:mod:`.records`), resuming
(:mod:`.resume`), BatchNorm re-estimation (:mod:`.precise_bn`) and the run's
environment (:mod:`.environment`).

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

import time
from pathlib import Path

import torch
import torch.nn as nn
import yaml
from spikingjelly.activation_based import functional

from ...neuron import sync_threshold_stats
from ..class_health import accuracy_warnings
from ..monitor import Monitor
from ..runfiles import ACCURACY_NAMES, EVAL_KEYS, best_accuracy
from . import distributed
from .build import (
    Run,
    autocast,
    build_run,
    decode,
    learning_rate,
    pick_device,
    seed_everything,
    set_lr,
    time_major_input,
    train_loader,
)
from .compiled import compile_model
from .environment import record_environment
from .errors import Preempted, TrainingError
from .evaluate import eval_split, evaluate, example_batch
from .guards import check_state, check_step, checked_loss
from .host_memory import keep_freed_memory
from .precise_bn import recompute_batch_norm
from .records import ACCURACIES, checkpoint_state, metrics, write_scalars
from .resume import restore, resume_changes
from .runfolder import RunFolder
from .signals import StopSignals

__all__ = ["Trainer", "train"]


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
        result = Trainer(recipe, folder, info, stop, log).fit(folder.wants_resume(resume))
    # after a failure, no teardown: it can wait forever for a process that went on, and
    # the process ends anyway (torchrun then stops the others)
    distributed.teardown(info)
    return result


class Trainer:
    """One run, step by step: :meth:`fit` sets it up (resumed or not), then trains, evaluates,
    records and checkpoints each remaining epoch. What the steps share lives on the object:
    the recipe, run folder, process info and stop signals given; the device, the built
    :class:`~.build.Run`, the trained module (the model, or its DistributedDataParallel
    wrapper), the AMP scaler, the epoch records, the first epoch to train, the monitor,
    the TensorBoard writer and the progress bars, set by :meth:`_start`.
    """

    def __init__(self, recipe: dict, folder: RunFolder, info, stop: StopSignals, log) -> None:
        self.recipe, self.folder, self.info, self.stop, self.log = recipe, folder, info, stop, log
        self.device: torch.device | None = None
        self.run: Run | None = None
        self.model: nn.Module | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.records: list[dict] = []
        self.start_epoch = 0
        self.monitor: Monitor | None = None
        self.writer = None  # the main process's TensorBoard SummaryWriter
        self.progress = None
        self.compile_seconds: float | None = None  # train.compile: for the next epoch record

    def fit(self, resume: bool) -> dict:
        """Set the run up (resumed when ``resume``) and train its remaining epochs; the metrics."""
        try:
            self._start(resume)
            for epoch in range(self.start_epoch, self.recipe["train"]["epochs"]):
                self._run_epoch(epoch)
            return metrics(self.records, eval_split(self.run.data))
        finally:
            if self.writer is not None:
                self.writer.close()
            if self.monitor is not None:
                self.monitor.close()

    def _start(self, resume: bool) -> None:
        """Build the run on its device, resume it when asked, and open what the epochs write."""
        t = self.recipe["train"]
        self.device = pick_device(t["device"], self.info)
        if self.device.type == "cpu":
            keep_freed_memory()
        seed_everything(self.recipe["seed"])
        self.run = build_run(self.recipe, self.device)
        self.scaler = torch.amp.GradScaler(
            "cuda", enabled=t["amp"] == "float16" and self.device.type == "cuda"
        )
        if resume:
            self._resume()
        elif getattr(self.run.loss, "can_be_negative", False):
            name = self.recipe["loss"]["name"]
            self.log(f"note: the {name} loss can be negative (it rewards easy samples)")
        self._open_monitor()
        self.model = self._trained_model()
        if self.recipe["train"]["compile"] is not None:
            self._compile()
        if self.info.is_main:
            self._open_outputs()
        self.progress = _progress_factory(self.info)

    def _compile(self) -> None:
        """``train.compile``: the trained module compiled whole now, timed apart."""
        backend = self.recipe["train"]["compile"]
        example = example_batch(self.run, self.recipe, self.device)
        self.model, seconds = compile_model(self.model, backend, example, functional.reset_net)
        self.compile_seconds = seconds
        self.log(f"compiled the model with {backend} in {seconds:.1f} s")

    def _resume(self) -> None:
        """Continue after the newest valid checkpoint, logging what the resume changes."""
        state = restore(self.run, self.scaler, self.folder, self.recipe)
        self.records, self.start_epoch = state["epochs"], state["epoch"]
        self.log(f"resuming {self.folder.out} after epoch {self.start_epoch}")
        for change in resume_changes(state, self.recipe, len(self.run.data.train), self.info):
            self.log(f"note: {change}")

    def _open_monitor(self) -> None:
        """The recipe's monitor (when ``monitor.every`` is set), its records cut to the epochs
        done."""
        m = self.recipe["monitor"]
        if m["every"] is None:
            return
        self.monitor = Monitor(
            self.run.model,
            self.run.loss,
            names=m["names"],
            every=m["every"],
            out_dir=self.folder.out / "monitor",
            reach_eps=m["reach_eps"],
            write=self.info.is_main,
        )
        self.monitor.keep_epochs(self.start_epoch)

    def _trained_model(self) -> nn.Module:
        """The module the steps train: the model, or under DDP its wrapper (statistics synced)."""
        model = self.run.model
        if not self.info.enabled:
            return model
        if self.recipe["train"]["sync_threshold_stats"]:
            sync_threshold_stats(model)
        return nn.parallel.DistributedDataParallel(
            model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            broadcast_buffers=False,  # buffers are averaged at the end of every epoch
        )

    def _open_outputs(self) -> None:
        """The main process's checkpoint folder, resolved recipe and TensorBoard writer."""
        out = self.folder.out
        self.folder.ckpt.mkdir(parents=True, exist_ok=True)
        (out / "recipe.yaml").write_text(yaml.safe_dump(self.recipe, sort_keys=False))
        record_environment(out / "environment.json", self.device, self.start_epoch > 0, self.log)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out / "tb"), purge_step=self.start_epoch + 1)

    def _run_epoch(self, epoch: int) -> None:
        """Epoch ``epoch`` (from 0): train, evaluate, warn, then record, log and checkpoint it.

        The epoch evaluates the validation split when the run has one, and the test set
        after the last epoch only; else the test set. The last epoch re-estimates the
        BatchNorm statistics first when ``train.precise_bn`` asks (:meth:`_precise_bn`).
        """
        start = time.perf_counter()
        row = {"epoch": epoch + 1, "lr": learning_rate(self.run, self.recipe, epoch)}
        if self.compile_seconds is not None:  # compiled before this epoch, timed apart
            row["compile_seconds"], self.compile_seconds = self.compile_seconds, None
        row.update(self._train_or_stop(epoch))
        split = eval_split(self.run.data)
        last = epoch + 1 == self.recipe["train"]["epochs"]
        if last and self.recipe["train"]["precise_bn"]:
            row["precise_bn_batches"] = self._precise_bn(epoch + 1)
        for name in [split] + (["test"] if split == "val" and last else []):
            scores = evaluate(self.model, self.recipe, self.run.data, self.device, self.info, name)
            row.update(zip(EVAL_KEYS[name], scores, strict=True))
        self._epoch_warnings(epoch + 1, row[EVAL_KEYS[split][2]], split)
        row["seconds"] = time.perf_counter() - start
        self._record(row, split)

    def _train_or_stop(self, epoch: int) -> dict:
        """Train ``epoch`` and check the state it leaves; a stop names the last good checkpoint.

        :raises Preempted: a signal stopped the epoch, which is dropped
        :raises TrainingError: a non-finite value or a refused loss stopped the run
        """
        try:
            scores = self._train_epoch(epoch)
            check_state(self.run, epoch + 1)
        except Preempted as e:
            raise Preempted(
                f"{e}; that epoch is dropped. Last good checkpoint: {self.folder.last_good()}",
                e.signum,
            ) from e
        except TrainingError as e:
            raise TrainingError(
                f"{e}; the run stopped. Last good checkpoint: {self.folder.last_good()}"
            ) from e
        return scores

    def _precise_bn(self, epoch: int) -> int:
        """Re-estimate the BatchNorm statistics over ``train.precise_bn`` training batches, in
        the order of epoch ``epoch`` (fixed by the seed: a resumed run gets the same); under
        DDP over each process's shard, then averaged. Returns the batches used."""

        def forward(batch) -> None:
            with autocast(self.recipe, self.device):
                self.run.model(
                    time_major_input(batch[0].to(self.device), self.recipe, self.run.data)
                )
            functional.reset_net(self.run.model)

        loader = train_loader(self.run, self.recipe, self.info, epoch)
        used = recompute_batch_norm(
            self.run.model, loader, forward, self.recipe["train"]["precise_bn"]
        )
        distributed.average_buffers(self.model, self.info, self.device)
        return used

    def _train_epoch(self, epoch: int) -> dict:
        """Train ``epoch`` on this process's batches; its loss, accuracy and samples (all
        processes)."""
        self.model.train()
        t, info = self.recipe["train"], self.info
        loader = train_loader(self.run, self.recipe, info, epoch)
        limit = t["limit_train_batches"]
        n_batches = len(loader) if limit is None else min(limit, len(loader))
        loss_sum = correct = total = 0.0
        start = time.perf_counter()
        bar = self.progress(total=n_batches, desc=f"epoch {epoch + 1}/{t['epochs']}", leave=False)
        for i, (x, y) in enumerate(loader):
            if i >= n_batches:
                break
            x, y = x.to(self.device), y.to(self.device)
            loss, out = self._train_step(x, y, epoch, i, n_batches)
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
            [loss_sum, correct, total], info, self.device
        )
        distributed.average_buffers(self.model, info, self.device)
        return {
            "train_loss": loss_sum / max(total, 1),
            "train_acc": correct / max(total, 1),
            "train_samples": int(total),
        }

    def _train_step(self, x, y, epoch: int, i: int, n_batches: int):
        """One optimizer step on batch ``i`` of ``n_batches`` in ``epoch``: ``(loss, output)``.

        Recorded by the monitor when it samples the batch; stopped, every process
        alike, by a signal or a non-finite output, loss or state (:func:`~.guards.checked_loss`,
        :func:`~.guards.check_step`).
        """
        set_lr(self.run, self.recipe, epoch + i / n_batches)
        sampled = self.monitor is not None and self.monitor.begin(epoch + 1, i, n_batches)
        where = f"epoch {epoch + 1}, batch {i + 1}"
        with autocast(self.recipe, self.device):
            out = self.model(time_major_input(x, self.recipe, self.run.data))
            loss = checked_loss(self.run, out, y, self.info, self.device, self.stop, where)
        self._optimizer_step(loss)
        check_step(self.run, self.info, self.device, where)
        if sampled:
            self.monitor.end()
        functional.reset_net(self.model)
        return loss, out

    def _optimizer_step(self, loss: torch.Tensor) -> None:
        """Backward, clip the gradients (``train.grad_clip``) and step, through the AMP scaler."""
        self.run.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        clip = self.recipe["train"]["grad_clip"]
        if clip is not None:
            self.scaler.unscale_(self.run.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.scaler.step(self.run.optimizer)
        self.scaler.update()

    def _epoch_warnings(self, epoch: int, per_class: list[float | None], split: str) -> None:
        """Log the classes the epoch leaves behind; the monitor closes its epoch and adds its
        own."""
        alerts = accuracy_warnings(per_class, f"epoch {epoch}: ", ACCURACY_NAMES[split])
        if self.monitor is not None:
            self.monitor.epoch_end(epoch, lambda: example_batch(self.run, self.recipe, self.device))
            alerts += self.monitor.class_warnings(epoch)
        for warning in alerts:
            self.log(f"warning: {warning}")

    def _record(self, row: dict, split: str) -> None:
        """Keep the epoch's ``row``, log it, checkpoint the run and write its scalars.

        ``best.pt`` follows the accuracy on ``split``, the split every epoch evaluates.
        """
        best = best_accuracy(self.records, split)
        improved = best is None or row[EVAL_KEYS[split][0]] > best
        self.records.append(row)
        scores = " ".join(f"{k[:-4]} acc {row[k]:.4f}" for k in ACCURACIES if k in row)
        self.log(
            f"epoch {row['epoch']}/{self.recipe['train']['epochs']}: "
            f"{self.recipe['loss']['name']} loss {row['train_loss']:.4f} {scores} "
            f"({row['seconds']:.1f} s)"
        )
        state = checkpoint_state(self.run, self.scaler, self.recipe, self.records, self.info)
        self.folder.save(state, improved, metrics(self.records, split))
        write_scalars(self.writer, row)


def _progress_factory(info):
    from tqdm.auto import tqdm

    def progress(**kwargs):
        return tqdm(disable=None if info.is_main else True, **kwargs)

    return progress


def _quiet(*args, **kwargs):
    pass
