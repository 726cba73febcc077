r"""``RunningThresholdLIFBase``: what every sj_ext LIF node shares.

The LIF charge parameters (``tau``, ``decay_input``, a learnable ``tau``),
the argument checks, the backend choice and DS-ATGO's running threshold
(``docs/methods.md``, DS-ATGO): a buffer ``running_threshold`` of one threshold per time
step (``[T_max]``, or ``[T_max, C]`` for per-channel statistics), started at
``v_threshold``, grown in training to the longest sequence seen, updated by

.. math::
    \bar V_{th}[t] \leftarrow (1 - m)\,\bar V_{th}[t] + m\,V_{th}(t)

and used as the threshold of step :math:`t` in evaluation mode; plus the
per-forward records ``threshold_seq`` / ``sigma_seq`` / ``width_seq``.
The forward is :func:`sj_ext.functional.lif_step` /
:func:`sj_ext.functional.lif_multi_step` (or the fused kernels) with the
node's options in one :class:`~sj_ext.functional.LIFParameters`
(:meth:`lif_parameters`); the thresholds they produce go to :meth:`_update`.
Subclasses hold no maths: they add options (a grouped node its grid, by
overriding :meth:`lif_parameters`) and their checks. Every node's constructor
arguments are written out in its own ``__init__``, with their types and defaults
(tests/test_spikingjelly_contract.py checks that the two nodes' shared arguments
agree with each other and with SpikingJelly's ``LIFNode``).

``backend='cupy'`` runs the multi-step forward (step mode ``'m'``) and its
backward in the fused CUDA kernels of :mod:`sj_ext.fused_lif`, ``backend='cpu'``
in the same kernels compiled for the CPU (g++ with OpenMP); both return the
same spikes, membrane, thresholds and :math:`\sigma_t` as the torch functions
(the reference; the tests compare them). The neuron can be built and saved
anywhere; a ``'cupy'`` forward raises ``RuntimeError`` without CuPy (``pip install
cupy-cuda13x``) or for an input not on a CUDA device, a ``'cpu'`` one for an
input on a GPU; where the CPU kernels cannot be built (no C++ compiler) a
``'cpu'`` neuron runs the torch backend after a one-time ``RuntimeWarning``. Options the
kernels do not cover -- per-channel statistics (``stats='channel'``) or
statistics synced across processes (``stats_group``) when statistics are
taken, surrogates other than sj_ext's dynamic ones and SpikingJelly's
``Rect`` / ``ATan`` / ``Sigmoid``, a callable projection -- run the torch
backend after a one-time ``RuntimeWarning``. Single steps (``'s'``, and
``store_v_seq=True``, which SpikingJelly runs step by step) use the torch
functions.
"""

import inspect
import math
import warnings
from collections.abc import Callable

import torch
import torch.nn as nn
from spikingjelly.activation_based.neuron import BaseNode

from .. import fused_lif as fused
from ..functional import LIFParameters, lif_multi_step, lif_step
from ..options import (
    BACKENDS,
    STATS,
    STEP_MODES,
    THRESHOLDS,
    Backend,
    Stats,
    StepMode,
    Threshold,
    check_choice,
)
from ..surrogate import DynamicSurrogateBase

__all__ = ["RunningThresholdLIFBase"]

_warned: set[str] = set()  # the beyond-trained-steps warnings given (once per message)


#: the arguments ``extra_repr`` leaves to ``BaseNode.extra_repr`` (shown first), the
#: surrogate (a child module), ``learnable_tau`` (shown with ``tau``) and ``store_v_seq``
_NOT_SHOWN = frozenset(
    {
        "v_threshold",
        "v_reset",
        "detach_reset",
        "step_mode",
        "surrogate_function",
        "learnable_tau",
        "store_v_seq",
    }
)


class RunningThresholdLIFBase(BaseNode):
    """Base of the sj_ext LIF nodes: charge parameters, running threshold, records.

    Memories: ``v`` (membrane after reset) and ``time_step`` (steps since the
    last ``reset``). Buffer: ``running_threshold``. Attributes set here, from the
    constructor's arguments (every node's own ``__init__`` names them, with their
    defaults): ``decay_input``, ``learnable_tau`` (then parameter ``w``, else
    ``tau``), ``threshold`` (``'fixed'`` or ``'adaptive'``), ``f_c``, ``momentum``,
    ``stats``, ``backend``; :meth:`default_surrogate` makes the surrogate when the
    node is given none.
    """

    def __init__(
        self,
        tau: float,
        *,
        decay_input: bool,
        learnable_tau: bool,
        v_threshold: float,
        v_reset: float | None,
        threshold: Threshold,
        f_c: float,
        momentum: float,
        stats: Stats,
        surrogate_function: Callable | None,
        detach_reset: bool,
        step_mode: StepMode,
        backend: Backend,
        store_v_seq: bool,
    ):
        if not (isinstance(tau, int | float) and math.isfinite(tau) and tau > 1.0):
            raise ValueError(f"tau must be a finite number > 1, got {tau!r}")
        check_choice("threshold", threshold, THRESHOLDS)
        check_choice("stats", stats, STATS)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum!r}")
        check_choice("backend", backend, BACKENDS)
        check_choice("step_mode", step_mode, STEP_MODES)
        if surrogate_function is None:
            surrogate_function = self.default_surrogate(threshold)
        super().__init__(
            float(v_threshold),
            None if v_reset is None else float(v_reset),
            surrogate_function,
            detach_reset,
            step_mode=step_mode,
            store_v_seq=store_v_seq,
        )
        self.decay_input = decay_input
        self.learnable_tau = learnable_tau
        if learnable_tau:
            self.w = nn.Parameter(torch.as_tensor(-math.log(tau - 1.0)))
        else:
            self.tau = float(tau)
        self.threshold = threshold
        self.f_c = float(f_c)
        self.momentum = float(momentum)
        self.stats = stats
        self.backend = backend
        self.stats_group = None  # a torch.distributed group: see sync_threshold_stats
        self.register_buffer("running_threshold", torch.empty(0))
        self.register_memory("time_step", 0)
        self._clear_records()

    @staticmethod
    def default_surrogate(threshold: Threshold) -> Callable:
        """The surrogate a node of this ``threshold`` kind takes when it is given none."""
        raise NotImplementedError

    @property
    def adaptive(self) -> bool:
        """Whether the threshold is DS-ATGO's adaptive one (``threshold='adaptive'``)."""
        return self.threshold == "adaptive"

    def extra_repr(self):
        """``BaseNode``'s fields, then every other constructor argument as the node holds it."""
        names = [n for n in inspect.signature(type(self)).parameters if n not in _NOT_SHOWN]
        return ", ".join([super().extra_repr(), *(f"{n}={self._shown(n)}" for n in names)])

    def _shown(self, name: str) -> str:
        """The argument ``name`` as :meth:`extra_repr` shows it."""
        if name == "tau" and self.learnable_tau:
            return f"{1.0 / self.w.sigmoid().item():.4g} (learnable)"
        return str(getattr(self, name))

    # ------------------------------------------------------------------ state
    @property
    def supported_backends(self) -> tuple[str, ...]:
        """The backends the current step mode runs, as SpikingJelly's nodes declare them.

        ``('torch', 'cupy', 'cpu')`` in step mode ``'m'``; ``('torch',)`` in ``'s'``,
        whose single steps always run the torch functions (a node set to a fused
        backend keeps it for its multi-step calls).
        """
        return BACKENDS if self.step_mode == "m" else ("torch",)

    @property
    def k(self):
        r"""``1/tau``: a float, or :math:`\mathrm{sigmoid}(w)` when tau is learnable."""
        return self.w.sigmoid() if self.learnable_tau else 1.0 / self.tau

    def _clear_records(self):
        self.threshold_seq = None
        self.sigma_seq = None
        self.width_seq = None

    def reset(self):
        super().reset()
        self._clear_records()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the running thresholds grow with the sequences seen: take the saved size
        saved = state_dict.get(prefix + "running_threshold")
        if saved is not None and saved.shape != self.running_threshold.shape:
            self.running_threshold = self.running_threshold.new_empty(saved.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ input
    def _check_rank(self, x: torch.Tensor, time_dims: int):
        """Raise a ``ValueError`` naming the shape when ``x`` is not ``[N, *]`` / ``[T, N, *]``."""
        if x.dim() < time_dims + 1:
            layout = "[T, N, *]" if time_dims else "[N, *]"
            raise ValueError(
                f"{type(self).__name__}(step_mode={self.step_mode!r}) expects input {layout}, "
                f"got shape {tuple(x.shape)}"
            )

    def materialize_states(self, inputs, states, step_mode):
        # check first: SpikingJelly indexes the first step of the input here
        self._check_rank(inputs[0], 1 if step_mode == "m" else 0)
        return super().materialize_states(inputs, states, step_mode)

    # ------------------------------------------------------- running threshold
    def _thresholds(self, t0: int, steps: int, x_step: torch.Tensor):
        r"""Thresholds for steps ``t0 .. t0+steps-1``: None (adaptive), a float, or running ones.

        The running ones are a tensor ``[steps]`` (layer statistics) or
        ``[steps, 1, C, 1, ...]`` (channel statistics, broadcastable to ``x_step``).
        In evaluation an untrained node (no running thresholds yet) fires at
        ``v_threshold``, the value every running threshold starts at; a step
        beyond the ``held`` trained ones uses the last one,
        :math:`\bar V_{th}[\min(t, held - 1)]` (see :meth:`_running`).
        """
        if not self.adaptive:
            return self.v_threshold
        if self.training:
            return None
        if not self.running_threshold.shape[0]:
            return self.v_threshold
        running = self._running(t0, steps)
        if self.stats == "channel":
            channels = x_step.shape[1]
            if running.shape[1] != channels:
                raise ValueError(
                    f"running thresholds hold {running.shape[1]} channels, input shape "
                    f"{tuple(x_step.shape)} has {channels}"
                )
            running = running.view(steps, 1, channels, *([1] * (x_step.dim() - 2)))
        return running.to(x_step.dtype)

    def _running(self, t0: int, steps: int) -> torch.Tensor:
        r"""The running thresholds of steps ``t0 .. t0+steps-1``, the last held one beyond.

        Past the ``held`` steps of the longest training sequence the threshold
        stays at the last trained step's, :math:`\bar V_{th}[held - 1]`: the
        membrane statistics of late steps settle (the input current repeats or
        varies slowly), so the latest estimate is the best one we hold, where
        ``v_threshold`` would be a threshold the network never fired with
        after training. A one-time ``RuntimeWarning`` names both counts.
        """
        held = self.running_threshold.shape[0]
        if t0 + steps <= held:
            return self.running_threshold[t0 : t0 + steps]
        message = (
            f"{type(self).__name__} holds running thresholds for {held} time steps (the "
            f"longest training sequence); evaluating step {t0 + steps - 1} (T >= {t0 + steps}), "
            f"so steps >= {held} use the threshold of step {held - 1}"
        )
        if message not in _warned:
            _warned.add(message)
            warnings.warn(message, RuntimeWarning, stacklevel=4)
        index = torch.arange(t0, t0 + steps, device=self.running_threshold.device)
        return self.running_threshold[index.clamp_(max=held - 1)]

    @torch.no_grad()
    def _update(self, t0: int, v_th_seq: torch.Tensor, sigma_seq: torch.Tensor | None):
        """Record the thresholds of steps ``t0 ..`` and, adaptive in training, move the buffer.

        :param v_th_seq: ``[steps]`` or ``[steps, 1, C, 1, ...]`` thresholds used
        :param sigma_seq: the matching :math:`\\sigma_t`, or None when none were taken
        """
        steps = v_th_seq.shape[0]
        v_th = v_th_seq.reshape(steps, -1) if self.stats == "channel" else v_th_seq.reshape(steps)
        sigma = None if sigma_seq is None else sigma_seq.reshape(v_th.shape)
        if self.adaptive and self.training:
            running = self.running_threshold
            if running.shape[0] < t0 + steps or running.shape[1:] != v_th.shape[1:]:
                if running.numel() and running.shape[1:] != v_th.shape[1:]:
                    raise ValueError(
                        f"running thresholds hold {tuple(running.shape[1:])} channels per step, "
                        f"the input gives {tuple(v_th.shape[1:])}"
                    )
                grown = running.new_full((t0 + steps, *v_th.shape[1:]), self.v_threshold)
                if running.numel():
                    grown[: running.shape[0]] = running
                self.running_threshold = running = grown
            running[t0 : t0 + steps].lerp_(v_th.to(running.dtype), self.momentum)
        width = (
            self.surrogate_function.width(sigma)
            if sigma is not None and isinstance(self.surrogate_function, DynamicSurrogateBase)
            else None
        )
        if t0 == 0 or self.threshold_seq is None:
            self.threshold_seq, self.sigma_seq, self.width_seq = v_th, sigma, width
        else:
            self.threshold_seq = torch.cat([self.threshold_seq, v_th])
            self.sigma_seq = None if sigma is None else torch.cat([self.sigma_seq, sigma])
            self.width_seq = None if width is None else torch.cat([self.width_seq, width])

    # ---------------------------------------------------------------- forward
    def lif_parameters(self, step_shape) -> LIFParameters:
        """The node's options for a per-step input of ``step_shape`` (``[N, *]``), in one object.

        What :func:`sj_ext.functional.lif_step`, :func:`sj_ext.functional.lif_multi_step`
        and the fused kernels take; built from the attributes at every forward,
        so a changed attribute (``f_c``, ``stats_group`` ...) takes effect.
        """
        return LIFParameters(
            decay_input=self.decay_input,
            v_reset=self.v_reset,
            surrogate_function=self.surrogate_function,
            detach_reset=self.detach_reset,
            f_c=self.f_c,
            stats=self.stats,
            stats_group=self.stats_group,
        )

    def _sequence_inputs(self, x_seq: torch.Tensor, t0: int):
        """The thresholds of steps ``t0 ..`` (:meth:`_thresholds`) and the options for ``x_seq``."""
        thresholds = self._thresholds(t0, x_seq.shape[0], x_seq[0])
        return thresholds, self.lif_parameters(x_seq.shape[1:])

    def torch_multi_step(self, x_seq: torch.Tensor, v: torch.Tensor, t0: int):
        """The multi-step forward by the torch functions, from membrane ``v`` at step ``t0``.

        :return: ``(spike_seq, v_T, v_th_seq, sigma_seq)`` of
            :func:`sj_ext.functional.lif_multi_step`; the node's memories, buffer
            and records are left as they are (the monitors re-run a fused forward
            through it)
        """
        thresholds, params = self._sequence_inputs(x_seq, t0)
        return lif_multi_step(x_seq, v, self.k, thresholds, params)

    def _fused_multi_step(self, x_seq: torch.Tensor, v: torch.Tensor, t0: int):
        """:meth:`torch_multi_step` in the fused kernels (``backend='cupy'`` or ``'cpu'``).

        ``None`` (after a one-time warning naming the reason) where the kernels
        do not cover the options, or the CPU kernels cannot be built here: the
        torch backend runs instead.

        :raises RuntimeError: ``'cupy'`` without CuPy or for an input not on a CUDA
            device; ``'cpu'`` for an input on a GPU
        """
        who = f"{type(self).__name__}(backend={self.backend!r})"
        try:
            launcher = fused.require_launcher(x_seq, self.backend)
        except fused.KernelsUnavailable as error:
            fused.warn_fallback(who, str(error))
            return None
        thresholds, params = self._sequence_inputs(x_seq, t0)
        reason = fused.unsupported_reason(x_seq, thresholds, params)
        if reason is not None:
            fused.warn_fallback(who, f"the fused kernels do not cover {reason}")
            return None
        return fused.lif_multi_step(x_seq, v, self.k, thresholds, params, launcher=launcher)

    def single_step_functional_forward(self, inputs, states):
        x = inputs[0]
        v, t0 = states
        self._check_rank(x, 0)
        threshold = self._thresholds(t0, 1, x)
        if isinstance(threshold, torch.Tensor):
            threshold = threshold[0]
        spike, v, _, v_th, sigma = lif_step(x, v, self.k, threshold, self.lif_parameters(x.shape))
        if sigma is None:
            self._update(t0, v_th[None], None)
        else:
            self._update(t0, v_th.expand_as(sigma)[None], sigma[None])
        return (spike,), (v, t0 + 1)

    def multi_step_functional_forward(self, inputs, states):
        x_seq = inputs[0]
        v, t0 = states
        self._check_rank(x_seq, 1)
        steps = x_seq.shape[0]
        result = self._fused_multi_step(x_seq, v, t0) if self.backend != "torch" else None
        if result is None:
            result = self.torch_multi_step(x_seq, v, t0)
        spikes, v, v_th_seq, sigma_seq = result
        self._update(t0, v_th_seq, sigma_seq)
        return (spikes,), (v, t0 + steps)
