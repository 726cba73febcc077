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

:func:`fire_and_reset` is the single statement of the fire, threshold and
reset equations; :func:`sj_ext.functional.lif_step` puts it after the charge
(grouped or not) and :func:`sj_ext.functional.lif_multi_step` runs the steps
over ``[T, N, *]``. The options come in one
:class:`~sj_ext.functional.LIFParameters`.
"""

import torch

from ..options import STATS, Stats, check_choice
from ..surrogate import DynamicSurrogateBase, has_closed_form, spike_derivative
from .params import LIFParameters

__all__ = [
    "lif_charge",
    "membrane_stats",
    "neuron_reset",
    "surrogate_spike",
    "surrogate_derivative",
    "needs_stats",
    "fire_and_reset",
    "backward_dtype",
]


def lif_charge(x, v, k, decay_input: bool, v_reset: float | None):
    """SpikingJelly's LIF charge with ``k = 1/tau`` (a float, or a tensor for PLIF)."""
    v_rest = 0.0 if v_reset is None else v_reset
    if decay_input:
        return v + (x - (v - v_rest)) * k
    return v - (v - v_rest) * k + x


def membrane_stats(h: torch.Tensor, stats: Stats, group=None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Detached :math:`(\mu_t, \sigma_t)` of one step's membrane ``h`` (``[N, *]``).

    ``'layer'``: 0-d tensors over every element. ``'channel'``: ``[1, C, 1, ...]``
    tensors (broadcastable to ``h``) over every dim but dim 1. :math:`\sigma_t`
    is the unbiased standard deviation, computed in two passes (mean, then the
    centred sum of squares). With a ``torch.distributed`` process ``group`` both
    passes are summed over its processes, so every process gets the statistics
    of the whole distributed batch (as ``SyncBatchNorm`` does). float16 and
    bfloat16 membranes are reduced in float32 and the results cast back.
    """
    check_choice("stats", stats, STATS)
    if stats == "layer":
        dims, count = None, h.numel()
    else:
        if h.dim() < 2:
            raise ValueError(
                f"stats='channel' needs [N, C, *] inputs per step, got {tuple(h.shape)}"
            )
        dims = [d for d in range(h.dim()) if d != 1]
        count = h.numel() // h.shape[1]
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

    In closed form (:func:`sj_ext.surrogate.spike_derivative`) for the dynamic
    surrogates and SpikingJelly's; any other elementwise surrogate is
    differentiated through its own autograd function, eagerly (the monitors do;
    the adjoint backward of :func:`sj_ext.functional.lif_multi_step` takes
    closed forms only, so that ``torch.compile`` traces it).
    """
    if has_closed_form(surrogate_function):
        return spike_derivative(surrogate_function, z, sigma)
    with torch.enable_grad():
        zr = z.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(surrogate_function(zr), zr, torch.ones_like(zr))
    return grad


def needs_stats(threshold, surrogate_function) -> bool:
    r"""Whether a step takes :math:`\mu_t, \sigma_t`: for the adaptive threshold (``threshold``
    ``None``) or for a dynamic surrogate's width."""
    return threshold is None or isinstance(surrogate_function, DynamicSurrogateBase)


def fire_and_reset(h: torch.Tensor, threshold, params: LIFParameters):
    r"""Fire the charged membrane ``h`` (``[N, *]``) and reset it.

    :param threshold: ``None`` for the adaptive :math:`f_c(\mu_t + \sigma_t)`,
        otherwise the threshold to use (a float, or a tensor broadcastable to
        ``h``: the running threshold of this step in evaluation mode)
    :param params: ``f_c``, ``stats``, ``stats_group`` (:func:`membrane_stats`),
        ``surrogate_function``, ``v_reset``, ``detach_reset`` are read
    :return: ``(spike, v_next, v_th, sigma)``; ``v_th`` a detached tensor
        broadcastable to ``h``; ``sigma`` the detached :math:`\sigma_t`, or
        ``None`` when neither the threshold nor the surrogate needs it
    """
    sigma = None
    if needs_stats(threshold, params.surrogate_function):
        mu, sigma = membrane_stats(h, params.stats, params.stats_group)
    if threshold is None:
        v_th = params.f_c * (mu + sigma)
    else:
        v_th = torch.as_tensor(threshold, dtype=h.dtype, device=h.device)
    spike = surrogate_spike(params.surrogate_function, h - v_th, sigma)
    return spike, neuron_reset(h, spike, v_th, params.v_reset, params.detach_reset), v_th, sigma
