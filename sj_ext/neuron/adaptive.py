r"""``AdaptiveThresholdLIF``: the DS-ATGO neuron as a SpikingJelly 2.0 node."""

from collections.abc import Callable

import torch

from ..functional import LIFParameters
from ..options import DEFAULT_BACKEND, Backend, Stats, StepMode, Threshold
from ..surrogate import DynamicRect
from .base import RunningThresholdLIFBase

__all__ = ["AdaptiveThresholdLIF"]


class AdaptiveThresholdLIF(RunningThresholdLIFBase):
    r"""LIF neuron whose threshold follows the membrane statistics of every step.

    DS-ATGO (Jiang et al., AAAI 2026; ``docs/methods.md``, DS-ATGO). In training mode,
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
    sequence seen. An untrained node evaluates at ``v_threshold`` (the start
    value), i.e. as ``LIFNode``; a step beyond the trained ones uses the last
    trained step's running threshold, with a one-time ``RuntimeWarning``
    (the late-step statistics settle, so that is the best estimate held).
    The default surrogate :class:`~sj_ext.surrogate.DynamicRect` widens with
    :math:`\sigma_t = \mathrm{std}(h_t)`.

    With ``threshold='fixed'`` the threshold is the fixed ``v_threshold`` and the
    node equals SpikingJelly's ``LIFNode`` (or ``ParametricLIFNode`` with
    ``learnable_tau=True``) for the same surrogate.

    The upstream DS-ATGO neuron (:math:`h_t = 0.2\,u_{t-1} + x_t`, hard reset
    to 0, :math:`f_c = 1`, rectangular width :math:`a_0 = v_0 = 1`) is
    ``AdaptiveThresholdLIF(tau=1.25, decay_input=False)``; add
    ``learnable_tau=True`` for its learnable decay.

    The arguments (``tau`` by position or keyword, the others by keyword):

    :param tau: membrane time constant (> 1); the initial one if learnable
    :param decay_input: whether the input is scaled by ``1/tau``
    :param learnable_tau: PLIF: ``1/tau = sigmoid(w)`` with ``w`` learnable
    :param v_threshold: initial running threshold; the threshold when ``threshold='fixed'``
    :param v_reset: hard-reset value, or ``None`` for a soft reset by :math:`V_{th}(t)`
    :param threshold: ``'adaptive'`` (DS-ATGO's, the default) or ``'fixed'`` (``v_threshold``)
    :param f_c: threshold scale :math:`f_c`
    :param momentum: running-threshold update rate :math:`m` in ``[0, 1]``
    :param stats: ``'layer'`` (the paper: every element of the step's tensor)
        or ``'channel'`` (per channel of ``[N, C, *]``)
    :param surrogate_function: a SpikingJelly surrogate; dynamic ones receive
        :math:`\sigma_t` (default ``DynamicRect()``)
    :param detach_reset: detach the spike in the reset
    :param step_mode: ``'s'`` (input ``[N, *]``) or ``'m'`` (input ``[T, N, *]``)
    :param backend: ``'torch'``; ``'cupy'`` (CUDA tensors) or ``'cpu'`` (CPU tensors): in
        step mode ``'m'`` the time loop runs in sj_ext's fused kernels (:mod:`sj_ext.fused_lif`)
    :param store_v_seq: keep the membrane of every step in ``v_seq`` (``'m'``)

    After a forward, ``threshold_seq`` / ``sigma_seq`` / ``width_seq`` hold
    the :math:`V_{th}(t)`, :math:`\sigma_t` and surrogate widths of every step
    since the last reset (``[T]`` or ``[T, C]``; ``width_seq`` is ``None`` for
    a surrogate without a width rule).
    """

    def __init__(
        self,
        tau: float = 2.0,
        *,
        decay_input: bool = LIFParameters.decay_input,
        learnable_tau: bool = False,
        v_threshold: float = 1.0,
        v_reset: float | None = LIFParameters.v_reset,
        threshold: Threshold = "adaptive",
        f_c: float = LIFParameters.f_c,
        momentum: float = 0.1,
        stats: Stats = LIFParameters.stats,
        surrogate_function: Callable | None = None,
        detach_reset: bool = LIFParameters.detach_reset,
        step_mode: StepMode = "s",
        backend: Backend = DEFAULT_BACKEND,
        store_v_seq: bool = False,
    ):
        super().__init__(
            tau,
            decay_input=decay_input,
            learnable_tau=learnable_tau,
            v_threshold=v_threshold,
            v_reset=v_reset,
            threshold=threshold,
            f_c=f_c,
            momentum=momentum,
            stats=stats,
            surrogate_function=surrogate_function,
            detach_reset=detach_reset,
            step_mode=step_mode,
            backend=backend,
            store_v_seq=store_v_seq,
        )

    @staticmethod
    def default_surrogate(threshold: Threshold) -> Callable:
        """:class:`~sj_ext.surrogate.DynamicRect`, DS-ATGO's, whatever the threshold."""
        return DynamicRect()

    # ---------------------------------------------------------------- forward
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
