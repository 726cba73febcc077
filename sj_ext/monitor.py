r"""Training monitors: what the papers plot, recorded for your own runs.

A :class:`Monitor` watches a network (and optionally its loss) on sampled
training batches and appends one JSON record per sampled batch to
``OUT/monitor/<name>.jsonl``. Which layers it watches it finds by type:
every SpikingJelly ``BaseNode`` (the sj_ext neurons included) is a layer;
nothing depends on a recipe's names. The monitors (:data:`MONITORS`):

``firing_rate``
    per layer and time step, :math:`r_t = \mathrm{mean}(s_t)` over the batch
    and every neuron of the layer (``layers: {name: [r_0 .. r_{T-1}]}``).
``threshold``
    per layer and step, the threshold used in training :math:`V_{th}(t)`
    (``train``), the running threshold :math:`\bar V_{th}[t]` (``running``),
    :math:`\sigma_t = \mathrm{std}(h_t)` (``sigma``) and the surrogate width
    :math:`a_t` (``width``) of the sj_ext neurons
    (:class:`~sj_ext.neuron.RunningThresholdLIFBase`; per-channel values are
    averaged over channels); for other neurons the fixed ``v_threshold``.
``grad_reach``
    DS-ATGO's analysis: per layer and step, the fraction of neurons whose
    surrogate gradient is not (practically) zero,

    .. math::
        \rho_t = \mathrm{mean}\big(\, g'(z_t) > \varepsilon\, g'(0) \,\big),
        \qquad z_t = h_t - V_{th}(t),

    with :math:`g'` the layer's surrogate derivative
    (:func:`sj_ext.functional.adaptive_lif.surrogate_derivative`, the same
    function the backward pass uses) and :math:`\varepsilon` = ``reach_eps``
    (default 0.01, relative to the peak). For a surrogate of finite support,
    e.g. the rectangle :math:`g'(z) = \frac{1}{a_t}\mathbb 1[|z| < a_t/2]`, any
    :math:`\varepsilon \in (0, 1)` counts exactly the non-zero gradients,
    :math:`|h_t - V_{th}(t)| < a_t/2` (``reach_eps = 0``: exactly :math:`g' > 0`
    for any surrogate); for one of infinite support (sigmoid, atan) it counts
    the neurons whose gradient is at least that fraction of the peak. :math:`z_t` is read
    where the neuron calls its surrogate (a forward hook on the surrogate
    module); a SpikingJelly neuron whose fused kernel never calls it is re-run
    once, without gradient, through its own functional step with a recording
    surrogate (SpikingJelly's torch reference path); an sj_ext neuron run by
    the fused CuPy kernels is re-run through its torch functions.
``group_rate``
    for grouped neurons (anything with ``grid_for``/``groups``/``window``, e.g.
    :class:`~sj_ext.neuron.DilatedWindowLIF`): the firing rate of every group
    and step, ``rate [T][G]`` (groups in row-major grid order).
``curriculum``
    CL-SNN's analysis, from a loss exposing ``last_loss`` :math:`\ell_i`,
    ``last_sigma`` :math:`\sigma^*_i` and ``last_tau`` :math:`\tau`
    (:class:`~sj_ext.loss.ConfidenceAwareLoss`): the per-sample pairs, and the
    easy (:math:`\ell_i < \tau`, so :math:`\sigma^*_i > 1`) vs hard split:
    counts, mean :math:`\sigma^*` of each, and the share of the total weight
    on easy samples :math:`\sum_{easy}\sigma^*_i / \sum_i \sigma^*_i`. Per
    class (``classes``, from the targets and outputs the loss was called with):
    sample count, weight share :math:`\sum_{i \in c}\sigma^*_i / \sum_i
    \sigma^*_i`, that share over the class's sample share (``weight_ratio``; 1
    = what plain averaging gives), mean :math:`\sigma^*` and the batch accuracy.
    :meth:`Monitor.class_warnings` turns an epoch's samples into collapse
    warnings (:mod:`sj_ext.class_health`).
``energy``
    once per epoch, synaptic operations and energy per inference of the SNN
    beside the same network as an ANN (:func:`sj_ext.energy.estimate_energy`)
    on the first test samples; written by :meth:`Monitor.epoch_end`.

Records: ``{"epoch": e (1-based), "batch": i (0-based), "progress": e - 1 +
i / n_batches, "layers": {...}, "kinds": {layer: class name}}`` (``energy``:
``{"epoch": e, ...}``); layers are named as ``model.named_modules()`` names
them (``conv_fc.2``; ``""`` when the model is the neuron itself). Files
are append-only, one line per record, flushed and fsynced; a crash mid-line
leaves a partial last line that :func:`read_records` ignores (it skips any
other damaged line with a warning naming file and line), and
:meth:`Monitor.keep_epochs` (called on ``--resume``) rewrites each file
atomically without the records of epochs that will run again.

Cost: nothing when no :class:`Monitor` exists; hooks are attached only for
the sampled batches (every ``every``-th batch of an epoch, its first
included) and removed after them. Monitors read and never change the run:
a run with monitors trains to bit-identical weights.

Example::

    mon = Monitor(net, loss=criterion, every=10, out_dir="runs/x/monitor")
    for i, (x_seq, y) in enumerate(loader):
        with mon.sample(epoch, i, len(loader)):   # a no-op unless i % 10 == 0
            loss = criterion(net(x_seq), y)
            loss.backward()
        optimizer.step()
        functional.reset_net(net)
"""

from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn as nn
from spikingjelly.activation_based.neuron import BaseNode

from .class_health import accuracy_warnings, class_rates, summed_class_rates, weight_warnings
from .functional.adaptive_lif import surrogate_derivative
from .functional.grouping import group_views
from .neuron.base import RunningThresholdLIFBase
from .runfiles import MONITORS, MonitorFileWarning, append_record, keep_epochs, read_records

__all__ = ["MONITORS", "Monitor", "read_records", "MonitorFileWarning"]

_LAYER_MONITORS = {"firing_rate", "threshold", "grad_reach", "group_rate"}  # hooks on neurons


def _round(x):
    return [_round(v) for v in x] if isinstance(x, list) else float(f"{x:.6g}")


def _floats(t: torch.Tensor) -> list:
    """A tensor as (nested) lists of Python floats rounded to 6 significant digits."""
    return _round(t.detach().double().tolist())


def _per_step(t: torch.Tensor, steps: int | None = None) -> torch.Tensor:
    """``[T]`` from ``[T]`` or ``[T, C, ...]`` (mean over the rest); ``[:steps]`` if given."""
    t = t.detach().float()
    t = t.reshape(t.shape[0], -1).mean(1) if t.dim() > 1 else t.reshape(-1)
    return t if steps is None else t[:steps]


def _is_grouped(module: nn.Module) -> bool:
    return all(hasattr(module, a) for a in ("grid_for", "groups", "window"))


class _Recorder(nn.Module):
    r"""A surrogate that records its input ``z = h - V_th`` and fires :math:`\Theta(z)`."""

    def __init__(self):
        super().__init__()
        self.z: list[torch.Tensor] = []

    def forward(self, z):
        self.z.append(z.detach())
        return (z >= 0).to(z.dtype)


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
            "firing_rate": lambda: {n: _floats(torch.cat(r)) for n, r in self._rates.items() if r},
            "threshold": self._thresholds,
            "grad_reach": lambda: {n: _floats(torch.cat(r)) for n, r in self._reach.items()},
            "group_rate": lambda: {
                n: {**g["grid"], "rate": _floats(torch.cat(g["rate"]))}
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
            if "group_rate" in self.names and _is_grouped(module):
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
                    module._multi_step(x_seq, v, module._thresholds(t0, len(x_seq), x_seq[0]))
                finally:
                    self._active = None
                return self._z.pop(name)
            recorder, original = _Recorder(), module.surrogate_function
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
            if isinstance(module, RunningThresholdLIFBase):
                if module.threshold_seq is None:
                    continue
                entry = {"train": _floats(_per_step(module.threshold_seq))}
                if module.adaptive and module.running_threshold.numel():
                    entry["running"] = _floats(_per_step(module.running_threshold, steps))
                for key, seq in (("sigma", module.sigma_seq), ("width", module.width_seq)):
                    if isinstance(seq, torch.Tensor):
                        entry[key] = _floats(_per_step(seq))
                layers[name] = entry
            elif isinstance(module.v_threshold, int | float):
                layers[name] = {"train": [float(module.v_threshold)] * steps}
        return layers

    def _curriculum(self) -> dict | None:
        loss, sigma, tau = (
            getattr(self.loss, a, None) for a in ("last_loss", "last_sigma", "last_tau")
        )
        if not all(isinstance(t, torch.Tensor) for t in (loss, sigma, tau)):
            return None
        loss, sigma, tau = loss.detach().float(), sigma.detach().float(), tau.detach().float()
        easy = loss < tau
        total = sigma.sum()
        record = {
            "tau": float(tau),
            "loss": _floats(loss),
            "sigma": _floats(sigma),
            "easy": int(easy.sum()),
            "hard": int((~easy).sum()),
            "mean_sigma_easy": float(sigma[easy].mean()) if easy.any() else None,
            "mean_sigma_hard": float(sigma[~easy].mean()) if (~easy).any() else None,
            "weight_easy": float(sigma[easy].sum() / total) if total > 0 else None,
        }
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

        See :mod:`sj_ext.class_health`; the per-class accuracy here is on the
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
        from .energy import estimate_energy

        tensors = [*self.model.parameters(), *self.model.buffers()]
        device = tensors[0].device if tensors else torch.device("cpu")
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            result = estimate_energy(self.model, make_input())
        record = {"epoch": epoch, **result}
        self._append("energy", record)
        return record
