r"""``AdaptiveThresholdLIF``: the DS-ATGO neuron as a SpikingJelly 2.0 node."""

import math

import torch
import torch.nn as nn
from spikingjelly.activation_based.neuron import BaseNode

from ..functional.adaptive_lif import STATS, adaptive_lif_multi_step, adaptive_lif_step
from ..surrogate import DynamicRect, DynamicSurrogateBase

__all__ = ["AdaptiveThresholdLIF"]

BACKENDS = ("torch", "cupy")


class AdaptiveThresholdLIF(BaseNode):
    r"""LIF neuron whose threshold follows the membrane statistics of every step.

    DS-ATGO (Jiang et al., AAAI 2026; ``METHODS.md`` §1). In training mode,
    at every step :math:`t`:

    .. math::
        h_t &= \mathrm{LIFcharge}(u_{t-1}, x_t) \\
        V_{th}(t) &= f_c\,(\mathrm{mean}(h_t) + \mathrm{std}(h_t))  \quad\text{(detached)} \\
        s_t &= \Theta(h_t - V_{th}(t)) \\
        \bar V_{th}[t] &\leftarrow (1 - m)\,\bar V_{th}[t] + m\,V_{th}(t)

    In evaluation mode :math:`V_{th}(t) = \bar V_{th}[t]`, the running threshold
    of step :math:`t` (buffer ``running_threshold``, ``[T_max]`` or
    ``[T_max, C]``, started at ``v_threshold``; it travels with ``state_dict``
    and is resized on load). The buffer grows in training to the longest
    sequence seen; evaluating a step it does not hold raises ``IndexError``.
    The default surrogate :class:`~sj_ext.surrogate.DynamicRect` widens with
    :math:`\sigma_t = \mathrm{std}(h_t)`.

    With ``adaptive=False`` the threshold is the fixed ``v_threshold`` and the
    node equals SpikingJelly's ``LIFNode`` (or ``ParametricLIFNode`` with
    ``learnable_tau=True``) for the same surrogate.

    The upstream DS-ATGO neuron (:math:`h_t = 0.2\,u_{t-1} + x_t`, hard reset
    to 0, :math:`f_c = 1`, rectangular width :math:`a_0 = v_0 = 1`) is
    ``AdaptiveThresholdLIF(tau=1.25, decay_input=False)``; add
    ``learnable_tau=True`` for its learnable decay.

    :param tau: membrane time constant (> 1); the initial one if learnable
    :param decay_input: whether the input is scaled by ``1/tau``
    :param learnable_tau: PLIF: ``1/tau = sigmoid(w)`` with ``w`` learnable
    :param v_threshold: initial running threshold; the threshold when ``adaptive=False``
    :param v_reset: hard-reset value, or ``None`` for a soft reset by :math:`V_{th}(t)`
    :param adaptive: use the adaptive threshold (``False``: a fixed ``v_threshold``)
    :param f_c: threshold scale :math:`f_c`
    :param momentum: running-threshold update rate :math:`m` in ``[0, 1]``
    :param stats: ``'layer'`` (the paper: every element of the step's tensor)
        or ``'channel'`` (per channel of ``[N, C, *]``)
    :param surrogate_function: a SpikingJelly surrogate; dynamic ones receive
        :math:`\sigma_t` (default ``DynamicRect()``)
    :param detach_reset: detach the spike in the reset
    :param step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``)
    :param backend: ``'torch'``
    :param store_v_seq: keep the membrane of every step in ``v_seq`` (``'m'``)

    After a forward, ``threshold_seq`` / ``sigma_seq`` / ``width_seq`` hold
    the :math:`V_{th}(t)`, :math:`\sigma_t` and surrogate widths of every step
    since the last reset (``[T]`` or ``[T, C]``; ``width_seq`` is ``None`` for
    a surrogate without a width rule).
    """

    def __init__(
        self,
        tau: float = 2.0,
        decay_input: bool = True,
        learnable_tau: bool = False,
        v_threshold: float = 1.0,
        v_reset: float | None = 0.0,
        adaptive: bool = True,
        f_c: float = 1.0,
        momentum: float = 0.1,
        stats: str = "layer",
        surrogate_function=None,
        detach_reset: bool = False,
        step_mode: str = "s",
        backend: str = "torch",
        store_v_seq: bool = False,
    ):
        if not (isinstance(tau, int | float) and math.isfinite(tau) and tau > 1.0):
            raise ValueError(f"tau must be a finite number > 1, got {tau!r}")
        if stats not in STATS:
            raise ValueError(f"stats must be one of {STATS}, got {stats!r}")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "cupy":
            raise NotImplementedError(
                "backend='cupy' (fused CUDA kernels) is not available in this version of "
                "sj_ext; use backend='torch'"
            )
        if step_mode not in ("s", "m"):
            raise ValueError(f"step_mode must be 's' or 'm', got {step_mode!r}")
        super().__init__(
            float(v_threshold),
            None if v_reset is None else float(v_reset),
            DynamicRect() if surrogate_function is None else surrogate_function,
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
        self.adaptive = adaptive
        self.f_c = float(f_c)
        self.momentum = float(momentum)
        self.stats = stats
        self.backend = backend
        self.register_buffer("running_threshold", torch.empty(0))
        self.register_memory("time_step", 0)
        self._clear_records()

    # ------------------------------------------------------------------ state
    @property
    def k(self):
        r"""``1/tau``: a float, or :math:`\mathrm{sigmoid}(w)` when tau is learnable."""
        return self.w.sigmoid() if self.learnable_tau else 1.0 / self.tau

    def extra_repr(self):
        tau = f"{1.0 / self.w.sigmoid().item():.4g} (learnable)" if self.learnable_tau else self.tau
        return (
            f"{super().extra_repr()}, tau={tau}, decay_input={self.decay_input}, "
            f"adaptive={self.adaptive}, f_c={self.f_c}, momentum={self.momentum}, "
            f"stats={self.stats}, backend={self.backend}"
        )

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

    # ---------------------------------------------------------------- forward
    def _options(self):
        return dict(
            decay_input=self.decay_input,
            v_reset=self.v_reset,
            f_c=self.f_c,
            stats=self.stats,
            surrogate_function=self.surrogate_function,
            detach_reset=self.detach_reset,
        )

    def _check_rank(self, x: torch.Tensor, time_dims: int):
        need = time_dims + (2 if self.stats == "channel" else 1)
        if x.dim() < need:
            layout = "[T, N, *]" if time_dims else "[N, *]"
            if self.stats == "channel":
                layout = layout.replace("N, *", "N, C, *")
            raise ValueError(
                f"AdaptiveThresholdLIF(step_mode={self.step_mode!r}, stats={self.stats!r}) expects "
                f"input {layout}, got shape {tuple(x.shape)}"
            )

    def _thresholds(self, t0: int, steps: int, x_step: torch.Tensor):
        """Thresholds for steps ``t0 .. t0+steps-1``: None (adaptive), a float, or running ones."""
        if not self.adaptive:
            return self.v_threshold
        if self.training:
            return None
        held = self.running_threshold.shape[0]
        if t0 + steps > held:
            raise IndexError(
                f"AdaptiveThresholdLIF holds running thresholds for {held} time steps (the longest "
                f"training sequence); evaluation asked for step {t0 + steps - 1}. Evaluate with "
                f"T <= {held}, or train with the T you evaluate with."
            )
        running = self.running_threshold[t0 : t0 + steps]
        if self.stats == "channel":
            channels = x_step.shape[1]
            if running.shape[1] != channels:
                raise ValueError(
                    f"running thresholds hold {running.shape[1]} channels, input shape "
                    f"{tuple(x_step.shape)} has {channels}"
                )
            running = running.view(steps, 1, channels, *([1] * (x_step.dim() - 2)))
        return running.to(x_step.dtype)

    @torch.no_grad()
    def _update(self, t0: int, v_th_seq: torch.Tensor, sigma_seq: torch.Tensor):
        steps = v_th_seq.shape[0]
        v_th = v_th_seq.reshape(steps, -1) if self.stats == "channel" else v_th_seq.reshape(steps)
        sigma = sigma_seq.reshape(v_th.shape)
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
            if isinstance(self.surrogate_function, DynamicSurrogateBase)
            else None
        )
        if t0 == 0 or self.threshold_seq is None:
            self.threshold_seq, self.sigma_seq, self.width_seq = v_th, sigma, width
        else:
            self.threshold_seq = torch.cat([self.threshold_seq, v_th])
            self.sigma_seq = torch.cat([self.sigma_seq, sigma])
            self.width_seq = None if width is None else torch.cat([self.width_seq, width])

    def single_step_functional_forward(self, inputs, states):
        x = inputs[0]
        v, t0 = states
        self._check_rank(x, 0)
        threshold = self._thresholds(t0, 1, x)
        if isinstance(threshold, torch.Tensor):
            threshold = threshold[0]
        spike, v, _, v_th, sigma = adaptive_lif_step(x, v, self.k, threshold, **self._options())
        self._update(t0, v_th.expand_as(sigma)[None], sigma[None])
        return (spike,), (v, t0 + 1)

    def multi_step_functional_forward(self, inputs, states):
        x_seq = inputs[0]
        v, t0 = states
        self._check_rank(x_seq, 1)
        steps = x_seq.shape[0]
        thresholds = self._thresholds(t0, steps, x_seq[0])
        spikes, v, v_th_seq, sigma_seq = adaptive_lif_multi_step(
            x_seq, v, self.k, thresholds, **self._options()
        )
        self._update(t0, v_th_seq, sigma_seq)
        return (spikes,), (v, t0 + steps)
