"""The :class:`Monitor`: hooks on a network's neurons, their surrogates and the loss.

On a sampled batch it attaches forward hooks, reads what :mod:`.measures`
turns into records, appends them through :mod:`sj_ext.app.runfiles` and removes the
hooks; what each monitor records is described in :mod:`sj_ext.app.monitor`.
"""

from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn as nn
from spikingjelly.activation_based.neuron import BaseNode

from ...functional.adaptive_lif import surrogate_derivative
from ...functional.grouping import group_views
from ...neuron.base import RunningThresholdLIFBase
from ..class_health import accuracy_warnings, class_rates, summed_class_rates, weight_warnings
from ..runfiles import MONITORS, append_record, keep_epochs
from .measures import Recorder, curriculum_record, floats, is_grouped, threshold_entry

__all__ = ["Monitor"]

_LAYER_MONITORS = {"firing_rate", "threshold", "grad_reach", "group_rate"}  # hooks on neurons


class Monitor:
    r"""Record firing rates, thresholds, gradient reach, group rates, curriculum weights, energy.

    :param model: the network (``[T, N, *]`` in, SpikingJelly neurons inside)
    :param loss: the loss module, read by ``curriculum`` (optional)
    :param names: which of :data:`MONITORS` to record (default: all)
    :param every: sample every ``every``-th training batch of an epoch (>= 1)
    :param out_dir: folder of the ``<name>.jsonl`` files; ``None`` keeps the
        records in memory only (:attr:`last`)
    :param reach_eps: :math:`\varepsilon` of ``grad_reach`` (relative to :math:`g'(0)`)
    :param write: whether this process writes files (rank 0 of a distributed run)

    :attr:`last` holds the records of the last sampled batch, ``{name: record}``.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: nn.Module | None = None,
        names=MONITORS,
        every: int = 1,
        out_dir: str | Path | None = None,
        reach_eps: float = 0.01,
        write: bool = True,
    ):
        unknown = [n for n in names if n not in MONITORS]
        if unknown:
            raise ValueError(f"unknown monitor(s) {unknown}; known: {', '.join(MONITORS)}")
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        if not 0 <= reach_eps < 1:
            raise ValueError(f"reach_eps must lie in [0, 1), got {reach_eps!r}")
        self.model = model
        self.loss = loss
        self.names = tuple(names)
        self.every = every
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.reach_eps = float(reach_eps)
        self.write = write
        self.last: dict[str, dict] = {}
        self._neurons = [(n, m) for n, m in model.named_modules() if isinstance(m, BaseNode)]
        self._handles = []
        self._where = None
        self._batch = None
        self._class_records: list[dict] = []

    # ------------------------------------------------------------------ files
    def keep_epochs(self, completed: int) -> None:
        """Drop the records of epochs after ``completed`` (they will run again), atomically.

        Call it when a run starts (``completed = 0``) or resumes after
        ``completed`` epochs, before any record is appended.
        """
        if self.out_dir is None or not self.write or not self.out_dir.is_dir():
            return
        keep_epochs(self.out_dir, completed)

    def _append(self, name: str, record: dict) -> None:
        self.last[name] = record
        if self.out_dir is None or not self.write:
            return
        append_record(self.out_dir / f"{name}.jsonl", record)

    # --------------------------------------------------------------- sampling
    def begin(self, epoch: int, batch: int, n_batches: int) -> bool:
        """Attach the hooks if batch ``batch`` (0-based) of epoch ``epoch`` (1-based) is sampled.

        :return: whether it is (then call :meth:`end` after the backward pass,
            before ``reset_net``)
        """
        layer_monitors = bool(_LAYER_MONITORS & set(self.names))
        if not self.write or batch % self.every:
            return False
        if not layer_monitors and "curriculum" not in self.names:
            return False
        self._batch = None
        if "curriculum" in self.names and isinstance(self.loss, nn.Module):
            self._handles.append(self.loss.register_forward_hook(self._loss_hook))
        self._where = {"epoch": epoch, "batch": batch, "progress": epoch - 1 + batch / n_batches}
        self._steps = {name: 0 for name, _ in self._neurons}
        self._rates = {name: [] for name, _ in self._neurons}
        self._groups: dict[str, list] = {}
        self._reach: dict[str, list] = {}
        self._z: dict[str, list] = {}
        self._states: dict[str, tuple] = {}
        self._active = None
        for name, module in self._neurons if layer_monitors else ():
            self._handles.append(module.register_forward_pre_hook(self._pre_hook(name)))
            self._handles.append(module.register_forward_hook(self._post_hook(name)))
        if "grad_reach" in self.names:
            seen = set()
            for _, module in self._neurons:
                sf = module.surrogate_function
                if isinstance(sf, nn.Module) and id(sf) not in seen:
                    seen.add(id(sf))
                    self._handles.append(
                        sf.register_forward_hook(self._surrogate_hook, with_kwargs=True)
                    )
        return True

    def end(self) -> dict[str, dict]:
        """Collect the sampled batch's records, append them to the files, remove the hooks."""
        self._remove_hooks()
        where, self._where = self._where, None
        found = {
            "firing_rate": lambda: {n: floats(torch.cat(r)) for n, r in self._rates.items() if r},
            "threshold": self._thresholds,
            "grad_reach": lambda: {n: floats(torch.cat(r)) for n, r in self._reach.items()},
            "group_rate": lambda: {
                n: {**g["grid"], "rate": floats(torch.cat(g["rate"]))}
                for n, g in self._groups.items()
            },
        }
        self.last = {}
        classes = {n: type(m).__name__ for n, m in self._neurons}
        for name in self.names:
            if name in found:
                layers = found[name]()
                if layers:
                    extra = {"eps": self.reach_eps} if name == "grad_reach" else {}
                    kinds = {n: classes[n] for n in layers}
                    self._append(name, {**where, **extra, "layers": layers, "kinds": kinds})
            elif name == "curriculum":
                curriculum = self._curriculum()
                if curriculum is not None:
                    self._append(name, {**where, **curriculum})
        return self.last

    @contextmanager
    def sample(self, epoch: int, batch: int, n_batches: int):
        """``with monitor.sample(epoch, batch, n_batches):`` forward and backward inside."""
        sampled = self.begin(epoch, batch, n_batches)
        try:
            yield sampled
        except BaseException:
            self._remove_hooks()
            raise
        if sampled:
            self.end()

    def close(self) -> None:
        """Remove any hook still attached (after an interrupted batch)."""
        self._remove_hooks()

    def _remove_hooks(self):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    # ------------------------------------------------------------------ hooks
    def _pre_hook(self, name):
        def hook(module, args):
            self._active = name
            self._z[name] = []
            if "grad_reach" in self.names:
                self._states[name] = tuple(module._memories.values())

        return hook

    def _post_hook(self, name):
        def hook(module, args, output):
            self._active = None
            out = (output[0] if isinstance(output, tuple) else output).detach()
            multi = module.step_mode == "m"
            steps = out.shape[0] if multi else 1
            self._steps[name] += steps
            if "firing_rate" in self.names:
                rate = out.reshape(steps, -1).float().mean(1)
                self._rates[name].append(rate)
            if "group_rate" in self.names and is_grouped(module):
                self._group_rate(name, module, out, multi)
            if "grad_reach" in self.names:
                self._grad_reach(name, module, args, out, multi)

        return hook

    def _loss_hook(self, module, args, output):
        """Keep the batch's targets and predicted classes (time-mean of ``[T, N, C]``)."""
        if len(args) < 2 or not isinstance(args[1], torch.Tensor):
            return
        out = args[0].detach()
        if out.dim() == 3:
            out = out.mean(getattr(module, "time_dim", 0))
        self._batch = (args[1].detach(), out.argmax(-1), out.shape[-1])

    def _surrogate_hook(self, module, args, kwargs, output):
        if self._active is not None:
            sigma = args[1] if len(args) > 1 else kwargs.get("sigma")
            self._z[self._active].append((args[0].detach(), sigma))

    # --------------------------------------------------------------- monitors
    def _group_rate(self, name, module, out, multi):
        step_shape = out.shape[1:] if multi else out.shape
        dims, groups = module.grid_for(step_shape)
        if not dims:
            return
        seq = (out if multi else out[None]).contiguous()
        views = group_views(seq, tuple(d + 1 for d in dims), groups, module.window)
        rate = torch.stack([v.reshape(v.shape[0], -1).float().mean(1) for v in views], 1)
        entry = self._groups.setdefault(
            name, {"grid": {"groups": list(groups), "window": module.window}, "rate": []}
        )
        entry["rate"].append(rate)

    def _grad_reach(self, name, module, args, out, multi):
        calls = self._z.pop(name, [])
        states = self._states.pop(name)
        if not calls:
            calls = self._replay(name, module, args, states)
        if not calls:
            return
        sf = module.surrogate_function
        fractions = []
        for z, sigma in calls:
            g = surrogate_derivative(sf, z, sigma)
            zero = z.new_zeros(()) if sigma is None else torch.zeros_like(sigma)
            peak = surrogate_derivative(sf, zero, sigma)
            reached = (g > self.reach_eps * peak).float()
            whole_sequence = multi and z.shape == out.shape and len(calls) == 1
            fractions.append(
                reached.reshape(z.shape[0], -1).mean(1) if whole_sequence else reached.mean()[None]
            )
        self._reach.setdefault(name, []).append(torch.cat(fractions))

    def _replay(self, name, module, args, states) -> list[tuple]:
        """``(z_t, sigma_t)`` of a neuron whose fused kernel never called its surrogate.

        The neuron runs again, without gradient and from the state it started
        the batch with, through its torch path: for the sj_ext neurons their
        pure torch functions (which call the hooked surrogate module), for
        SpikingJelly neurons their functional step (which leaves the module's
        state untouched) with a recording Python surrogate, which makes
        SpikingJelly take its torch reference path.
        """
        x = args[0]
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            states = module.materialize_states(tuple(args), states, module.step_mode)
            if isinstance(module, RunningThresholdLIFBase):
                if module.stats_group is not None:  # statistics over processes: one rank only here
                    return []
                v, t0 = states
                x_seq = x if module.step_mode == "m" else x[None]
                self._active, self._z[name] = name, []
                try:
                    module.torch_multi_step(x_seq, v, t0)
                finally:
                    self._active = None
                return self._z.pop(name)
            recorder, original = Recorder(), module.surrogate_function
            module.surrogate_function = recorder
            try:
                if module.step_mode == "m":
                    module.multi_step_functional_forward(tuple(args), states)
                else:
                    module.single_step_functional_forward(tuple(args), states)
            except NotImplementedError:
                return []
            finally:
                module.surrogate_function = original
            return [(z, None) for z in recorder.z]

    def _thresholds(self) -> dict:
        layers = {}
        for name, module in self._neurons:
            steps = self._steps[name]
            if not steps:
                continue
            entry = threshold_entry(module, steps)
            if entry is not None:
                layers[name] = entry
        return layers

    def _curriculum(self) -> dict | None:
        loss, sigma, tau = (
            getattr(self.loss, a, None) for a in ("last_loss", "last_sigma", "last_tau")
        )
        if not all(isinstance(t, torch.Tensor) for t in (loss, sigma, tau)):
            return None
        record = curriculum_record(loss, sigma, tau)
        sigma = sigma.detach().float()
        if self._batch is not None and self._batch[0].shape == sigma.shape:
            record["classes"] = self._classes(sigma, *self._batch)
        return record

    def _classes(self, sigma, target, pred, C) -> dict:
        """Per class: samples, weight share, weight share / sample share, mean sigma*, accuracy."""
        target, pred = target.long().cpu(), pred.cpu()
        counts = [
            torch.bincount(target, weights=w, minlength=C).tolist()
            for w in (None, sigma.cpu().double(), (pred == target).double())
        ]
        self._class_records.append({"classes": class_rates(*counts)})
        return self._class_records[-1]["classes"]

    def class_warnings(self, epoch: int) -> list[str]:
        """Collapse warnings from the curriculum samples of the epoch just ended, then reset.

        See :mod:`sj_ext.app.class_health`; the per-class accuracy here is on the
        sampled training batches.
        """
        rates, self._class_records = summed_class_rates(self._class_records), []
        if rates is None:
            return []
        where = f"epoch {epoch} (sampled training batches): "
        return weight_warnings(rates["weight_ratio"], where) + accuracy_warnings(
            rates["acc"], where, "training accuracy"
        )

    # ------------------------------------------------------------------ epoch
    def epoch_end(self, epoch: int, make_input) -> dict | None:
        """The ``energy`` record of epoch ``epoch``: counts on ``make_input()`` (``[T, N, *]``).

        Runs on every process (the forward may hold collectives, e.g. synced
        threshold statistics); only the writing one appends. The global RNG
        states are restored afterwards, so the run does not change.
        """
        if "energy" not in self.names:
            return None
        from ..energy import estimate_energy

        tensors = [*self.model.parameters(), *self.model.buffers()]
        device = tensors[0].device if tensors else torch.device("cpu")
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            result = estimate_energy(self.model, make_input())
        record = {"epoch": epoch, **result}
        self._append("energy", record)
        return record
