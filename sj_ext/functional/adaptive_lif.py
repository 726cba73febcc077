r"""DS-ATGO: LIF with a forward adaptive threshold (the torch reference).

Notation (``docs/methods.md``, Notation; the method and its readings:
``docs/methods.md``, DS-ATGO): ``x_t`` input current, ``h_t`` charged
membrane, ``s_t`` spikes, ``u_t`` membrane after reset, ``k = 1/tau``
(``V_{reset}`` counts as 0 in the charge when the reset is soft).

.. math::
    h_t &= u_{t-1} + k\,(x_t - (u_{t-1} - V_{reset}))   &&\text{decay\_input=True} \\
    h_t &= u_{t-1} - k\,(u_{t-1} - V_{reset}) + x_t     &&\text{decay\_input=False} \\
    \mu_t, \sigma_t &= \mathrm{mean}(h_t), \mathrm{std}(h_t)  &&\text{detached, unbiased} \\
    V_{th}(t) &= f_c\,(\mu_t + \sigma_t)                  &&\text{training} \\
    s_t &= \Theta(h_t - V_{th}(t)) \\
    u_t &= h_t (1 - s_t) + V_{reset}\, s_t  \;\text{(hard)}, \quad
           h_t - V_{th}(t)\, s_t \;\text{(soft, } V_{reset}=\text{None)} \\
    \partial s_t / \partial h_t &= g'(h_t - V_{th}(t);\, a_t)  &&\text{backward (surrogate)}

The statistics are taken over the whole layer tensor of a step
(``stats='layer'``, the paper) or per channel (``stats='channel'``: over every
dim of ``[N, C, *]`` but ``C``). No gradient flows through
:math:`\mu_t, \sigma_t, V_{th}`. A dynamic surrogate
(:class:`sj_ext.surrogate.DynamicSurrogateBase`) receives :math:`\sigma_t` and
sets its width :math:`a_t = a_0 (1 + \tanh(\sigma_t - v_0))`; any other
surrogate has a fixed width.

:func:`adaptive_lif_step` is the single statement of the forward equations;
:func:`adaptive_lif_multi_step` runs it over ``[T, N, *]`` without an autograd
graph per step and back-propagates through time by the adjoint recurrence
(tested against autograd of the step).
"""

from dataclasses import dataclass
from functools import partial

import torch
from spikingjelly.activation_based.surrogate import SurrogateFunctionBase
from torch.autograd.function import once_differentiable

from ..surrogate import DynamicSurrogateBase

__all__ = [
    "lif_charge",
    "membrane_stats",
    "neuron_reset",
    "surrogate_spike",
    "surrogate_derivative",
    "fire_and_reset",
    "adaptive_lif_step",
    "run_steps",
    "adaptive_lif_multi_step",
    "backward_dtype",
]

STATS = ("layer", "channel")


def lif_charge(x, v, k, decay_input: bool, v_reset: float | None):
    """SpikingJelly's LIF charge with ``k = 1/tau`` (a float, or a tensor for PLIF)."""
    v_rest = 0.0 if v_reset is None else v_reset
    if decay_input:
        return v + (x - (v - v_rest)) * k
    return v - (v - v_rest) * k + x


def membrane_stats(h: torch.Tensor, stats: str, group=None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Detached :math:`(\mu_t, \sigma_t)` of one step's membrane ``h`` (``[N, *]``).

    ``'layer'``: 0-d tensors over every element. ``'channel'``: ``[1, C, 1, ...]``
    tensors (broadcastable to ``h``) over every dim but dim 1. :math:`\sigma_t`
    is the unbiased standard deviation, computed in two passes (mean, then the
    centred sum of squares). With a ``torch.distributed`` process ``group`` both
    passes are summed over its processes, so every process gets the statistics
    of the whole distributed batch (as ``SyncBatchNorm`` does). float16 and
    bfloat16 membranes are reduced in float32 and the results cast back.
    """
    if stats == "layer":
        dims, count = None, h.numel()
    elif stats == "channel":
        if h.dim() < 2:
            raise ValueError(
                f"stats='channel' needs [N, C, *] inputs per step, got {tuple(h.shape)}"
            )
        dims = [d for d in range(h.dim()) if d != 1]
        count = h.numel() // h.shape[1]
    else:
        raise ValueError(f"stats must be one of {STATS}, got {stats!r}")
    if count < 2:
        raise ValueError(
            f"stats={stats!r} over a membrane of shape {tuple(h.shape)} has {count} element per "
            "statistic; the standard deviation needs at least 2"
        )
    dtype = h.dtype
    h = h.detach()
    if dtype in (torch.float16, torch.bfloat16):  # their sums overflow / lose precision
        h = h.float()

    def total(x: torch.Tensor) -> torch.Tensor:
        x = x.sum() if dims is None else x.sum(dim=dims, keepdim=True)
        if group is not None:
            torch.distributed.all_reduce(x, group=group)
        return x

    if group is not None:
        count_t = torch.tensor(float(count), device=h.device)
        torch.distributed.all_reduce(count_t, group=group)
        count = count_t.item()
    mu = total(h) / count
    sigma = torch.sqrt(total((h - mu).square()) / (count - 1))
    return mu.to(dtype), sigma.to(dtype)


def backward_dtype(dtype: torch.dtype) -> torch.dtype:
    """The arithmetic dtype of the adjoint recurrence: float32 for float16 / bfloat16 storage.

    The half-precision backward runs in float32 (as the fused kernels do) and
    rounds the gradients once: op-by-op rounding over the time loop drifts, and
    a surrogate width rounded to half moves its window's edges.
    """
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def neuron_reset(h, spike, v_threshold, v_reset: float | None, detach_reset: bool):
    """Hard reset to ``v_reset``, or soft reset (subtract ``v_threshold``) when it is None."""
    if detach_reset:
        spike = spike.detach()
    if v_reset is None:
        return h - spike * v_threshold
    return spike * v_reset + (1.0 - spike) * h


def surrogate_spike(surrogate_function, z: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    r""":math:`\Theta(z)` by ``surrogate_function``; a dynamic one also gets :math:`\sigma_t`."""
    if isinstance(surrogate_function, DynamicSurrogateBase):
        return surrogate_function(z, sigma)
    return surrogate_function(z)


def surrogate_derivative(surrogate_function, z: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Elementwise surrogate gradient ``d spike / d z`` at ``z``.

    Dynamic surrogates give it in closed form; any other elementwise surrogate
    (SpikingJelly's built-ins included) is differentiated through its own
    autograd function, so its definition stays the single source of truth.
    """
    if isinstance(surrogate_function, DynamicSurrogateBase):
        return surrogate_function.derivative(z, surrogate_function.width(sigma))
    with torch.enable_grad():
        zr = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(surrogate_function(zr), zr, torch.ones_like(zr))
    return grad


def fire_and_reset(
    h: torch.Tensor,
    threshold,
    *,
    f_c: float,
    stats: str,
    surrogate_function,
    v_reset: float | None,
    detach_reset: bool,
    stats_group=None,
):
    r"""Fire the charged membrane ``h`` (``[N, *]``) and reset it.

    :param threshold: ``None`` for the adaptive :math:`f_c(\mu_t + \sigma_t)`,
        otherwise the threshold to use (a float, or a tensor broadcastable to
        ``h``: the running threshold of this step in evaluation mode)
    :return: ``(spike, v_next, v_th, sigma)``; ``v_th`` a detached tensor
        broadcastable to ``h``; ``sigma`` the detached :math:`\sigma_t`, or
        ``None`` when neither the threshold nor the surrogate needs it
    :param stats_group: process group to take the statistics over (:func:`membrane_stats`)
    """
    sigma = None
    if threshold is None or isinstance(surrogate_function, DynamicSurrogateBase):
        mu, sigma = membrane_stats(h, stats, stats_group)
    if threshold is None:
        v_th = f_c * (mu + sigma)
    else:
        v_th = torch.as_tensor(threshold, dtype=h.dtype, device=h.device)
    spike = surrogate_spike(surrogate_function, h - v_th, sigma)
    return spike, neuron_reset(h, spike, v_th, v_reset, detach_reset), v_th, sigma


def adaptive_lif_step(
    x: torch.Tensor,
    v: torch.Tensor,
    k,
    threshold,
    *,
    decay_input: bool,
    v_reset: float | None,
    f_c: float,
    stats: str,
    surrogate_function,
    detach_reset: bool,
    stats_group=None,
):
    r"""One step of the adaptive-threshold LIF: :func:`lif_charge`, then :func:`fire_and_reset`.

    :param x: input current ``[N, *]``
    :param v: membrane after the previous reset ``[N, *]``
    :param k: ``1/tau`` (float, or a 0-d tensor for a learnable tau)
    :param threshold: as :func:`fire_and_reset`
    :return: ``(spike, v_next, h, v_th, sigma)`` (``h`` the charged membrane)
    """
    h = lif_charge(x, v, k, decay_input, v_reset)
    spike, v_next, v_th, sigma = fire_and_reset(
        h,
        threshold,
        f_c=f_c,
        stats=stats,
        surrogate_function=surrogate_function,
        v_reset=v_reset,
        detach_reset=detach_reset,
        stats_group=stats_group,
    )
    return spike, v_next, h, v_th, sigma


def run_steps(step, x_seq: torch.Tensor, v: torch.Tensor, thresholds, keep_charged=False):
    """Run ``step(x_t, v, threshold=threshold_t) -> (spike, v, h, v_th, sigma)`` over ``x_seq``.

    :param thresholds: ``None``, a float, or a tensor of per-step thresholds (indexed by t)
    :return: ``(spike_seq, v_T, h_seq or None, v_th_seq, sigma_seq or None)``; ``v_th_seq``
        ``[T]`` or ``[T, 1, C, 1, ...]`` (expanded to the shape of ``sigma``)
    """
    spikes, charged, v_ths, sigmas = [], [], [], []
    for t in range(x_seq.shape[0]):
        threshold = thresholds[t] if isinstance(thresholds, torch.Tensor) else thresholds
        spike, v, h, v_th, sigma = step(x_seq[t], v, threshold=threshold)
        spikes.append(spike)
        if keep_charged:
            charged.append(h)
        v_ths.append(v_th if sigma is None else v_th.expand_as(sigma))
        sigmas.append(sigma)
    return (
        torch.stack(spikes),
        v,
        torch.stack(charged) if keep_charged else None,
        torch.stack(v_ths),
        None if sigmas[0] is None else torch.stack(sigmas),
    )


@dataclass(frozen=True)
class _Options:
    decay_input: bool
    v_reset: float | None
    f_c: float
    stats: str
    surrogate_function: object
    detach_reset: bool
    stats_group: object = None

    def step(self, k):
        return partial(
            adaptive_lif_step,
            k=k,
            decay_input=self.decay_input,
            v_reset=self.v_reset,
            f_c=self.f_c,
            stats=self.stats,
            surrogate_function=self.surrogate_function,
            detach_reset=self.detach_reset,
            stats_group=self.stats_group,
        )


class _AdaptiveLIFMultiStep(torch.autograd.Function):
    """Whole time loop in one autograd node: no graph per step, adjoint backward."""

    @staticmethod
    def forward(ctx, x_seq, v, k, thresholds, opt: _Options):
        spikes, v_last, h_seq, v_th_seq, sigma_seq = run_steps(
            opt.step(k), x_seq, v, thresholds, keep_charged=True
        )
        ctx.opt = opt
        ctx.k = k
        learn_k = isinstance(k, torch.Tensor) and ctx.needs_input_grad[2]
        ctx.save_for_backward(
            h_seq, v_th_seq, sigma_seq, x_seq if learn_k else None, v if learn_k else None
        )
        ctx.mark_non_differentiable(*(t for t in (v_th_seq, sigma_seq) if t is not None))
        return spikes, v_last, v_th_seq, sigma_seq

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_spikes, grad_v, _grad_v_th, _grad_sigma):
        h_seq, v_th_seq, sigma_seq, x_seq, v_init = ctx.saved_tensors
        opt, k = ctx.opt, ctx.k
        learn_k = x_seq is not None
        dtype = h_seq.dtype
        acc = backward_dtype(dtype)
        k_val = k.detach().to(acc) if isinstance(k, torch.Tensor) else k
        v_rest = 0.0 if opt.v_reset is None else opt.v_reset
        grad_x = torch.empty_like(h_seq)  # each step's float32 gradient rounded once on store
        grad_u = torch.zeros_like(h_seq[0], dtype=acc) if grad_v is None else grad_v.to(acc)
        grad_k = torch.zeros((), dtype=acc, device=h_seq.device) if learn_k else None
        for t in range(h_seq.shape[0] - 1, -1, -1):
            z = (h_seq[t] - v_th_seq[t]).to(acc)  # the forward's z, rounded to the storage dtype
            v_th = v_th_seq[t].to(acc)
            sigma = None if sigma_seq is None else sigma_seq[t].to(acc)
            sg = surrogate_derivative(opt.surrogate_function, z, sigma)
            # d u_t / d h_t through the reset
            if opt.v_reset is None:
                du_dh = 1.0 if opt.detach_reset else 1.0 - v_th * sg
            else:
                du_dh = 1.0 - (z >= 0).to(acc)
                if not opt.detach_reset:
                    du_dh = du_dh + (opt.v_reset - h_seq[t].to(acc)) * sg
            grad_h = grad_u * du_dh
            if grad_spikes is not None:
                grad_h = grad_h + grad_spikes[t].to(acc) * sg
            grad_x[t] = grad_h * k_val if opt.decay_input else grad_h
            if learn_k:
                if t > 0:  # u_{t-1} as the forward rounded it
                    h_prev = h_seq[t - 1]
                    s_prev = (h_prev >= v_th_seq[t - 1]).to(dtype)
                    u_prev = neuron_reset(h_prev, s_prev, v_th_seq[t - 1], opt.v_reset, False)
                else:
                    u_prev = v_init
                u_prev = u_prev.to(acc)
                dh_dk = x_seq[t].to(acc) - (u_prev - v_rest) if opt.decay_input else v_rest - u_prev
                grad_k = grad_k + (grad_h * dh_dk).sum()
            grad_u = grad_h * (1.0 - k_val)
        return (
            grad_x,
            grad_u.to(dtype),
            None if grad_k is None else grad_k.to(dtype),
            None,
            None,
        )


def adaptive_lif_multi_step(
    x_seq: torch.Tensor,
    v: torch.Tensor,
    k,
    thresholds=None,
    *,
    decay_input: bool,
    v_reset: float | None,
    f_c: float,
    stats: str,
    surrogate_function,
    detach_reset: bool,
    stats_group=None,
):
    r"""The adaptive-threshold LIF over a sequence.

    :param x_seq: input currents ``[T, N, *]``
    :param v: initial membrane ``[N, *]``
    :param k: ``1/tau`` (float, or a 0-d tensor for a learnable tau)
    :param thresholds: ``None`` (adaptive), a float (fixed), or a tensor
        ``[T]`` / ``[T, 1, C, 1, ...]`` of per-step thresholds (evaluation mode)
    :return: ``(spike_seq [T, N, *], v_T [N, *], v_th_seq, sigma_seq)``; the
        last two are ``[T]`` (layer statistics) or ``[T, 1, C, 1, ...]``
        (channel statistics), detached; ``sigma_seq`` is ``None`` when neither
        the threshold nor the surrogate needs :math:`\sigma_t`

    With a SpikingJelly surrogate in spiking mode the loop runs as one autograd
    node (forward without graph, adjoint backward); otherwise (``spiking=False``
    or a plain callable) it is differentiated step by step by autograd.
    """
    opt = _Options(decay_input, v_reset, f_c, stats, surrogate_function, detach_reset, stats_group)
    if isinstance(surrogate_function, SurrogateFunctionBase) and surrogate_function.spiking:
        return _AdaptiveLIFMultiStep.apply(x_seq, v, k, thresholds, opt)
    spikes, v, _, v_th_seq, sigma_seq = run_steps(opt.step(k), x_seq, v, thresholds)
    return spikes, v, v_th_seq, sigma_seq
