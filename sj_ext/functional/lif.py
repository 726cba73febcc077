r"""One LIF step and the time loop, for every sj_ext neuron (the torch reference).

A step charges the membrane -- the plain LIF charge, or group after group
through the projection (:func:`~sj_ext.functional.grouping.grouped_charge`,
``docs/methods.md``, Grouping) -- then fires it against a fixed, running or
adaptive threshold and resets it
(:func:`~sj_ext.functional.adaptive_lif.fire_and_reset`, ``docs/methods.md``,
DS-ATGO):

.. math::
    h_t &= \mathrm{charge}(x_t, u_{t-1}) \\
    s_t &= \Theta(h_t - V_{th}(t)), \qquad u_t = \mathrm{reset}(h_t, s_t)

with every option in one :class:`~sj_ext.functional.LIFParameters`.
:func:`lif_multi_step` runs :func:`lif_step` over ``[T, N, *]``. When the
charge is the plain LIF one (no chain of groups) and the surrogate is in
spiking mode with a closed-form derivative :math:`g'`
(:func:`sj_ext.surrogate.spike_derivative`: the dynamic surrogates and
SpikingJelly's), the time loop is one autograd node: the forward keeps no
graph per step and the backward is the adjoint recurrence (tested against
autograd of the step), plain torch ops that ``torch.compile`` traces whole:

.. math::
    \frac{\partial L}{\partial h_t} &= \frac{\partial L}{\partial u_t}
        \frac{\partial u_t}{\partial h_t} + \frac{\partial L}{\partial s_t}\, g'(z_t), \qquad
    \frac{\partial L}{\partial u_{t-1}} = \frac{\partial L}{\partial h_t}\,(1 - k), \qquad
    \frac{\partial L}{\partial x_t} = \frac{\partial L}{\partial h_t}\, k^{[\text{decay\_input}]}

with :math:`z_t = h_t - V_{th}(t)` and :math:`\partial u_t / \partial h_t`
from the reset. Otherwise autograd differentiates the steps (for a spiking
surrogate without a closed form, after a one-time warning naming it, given
by the first eager call: Dynamo cannot trace ``warnings.warn``).
"""

import warnings
from functools import partial

import torch
from torch.autograd.function import once_differentiable

from ..surrogate import has_closed_form, spike_derivative
from .adaptive_lif import backward_dtype, fire_and_reset, neuron_reset
from .grouping import chain_length, grouped_charge
from .params import LIFParameters

__all__ = ["lif_step", "run_steps", "lif_multi_step"]

_warned: set[type] = set()  # the surrogates warned about (once per class)


def lif_step(x: torch.Tensor, v: torch.Tensor, k, threshold, params: LIFParameters):
    r"""One step: :func:`~sj_ext.functional.grouping.grouped_charge`, then fire and reset at once.

    :param x: input current ``[N, *]``
    :param v: membrane after the previous reset ``[N, *]``
    :param k: ``1/tau`` (float, or a 0-d tensor for a learnable tau)
    :param threshold: ``None`` for DS-ATGO's adaptive :math:`f_c(\mu_t + \sigma_t)`
        over the whole charged :math:`h_t` (``stats='layer'``) or per channel of
        ``[N, C, *]`` (``stats='channel'``), otherwise the threshold (a float, or a
        tensor broadcastable to ``x``: a running threshold in evaluation mode)
    :param params: the options
    :return: ``(spike, v_next, h, v_th, sigma)``; ``h`` the charged membrane,
        ``v_th`` a detached tensor broadcastable to ``x``, ``sigma`` the detached
        :math:`\sigma_t` or ``None`` when neither the threshold nor the surrogate
        needs it
    """
    h = grouped_charge(x, v, k, params)
    spike, v_next, v_th, sigma = fire_and_reset(h, threshold, params)
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


class _AdjointLIF(torch.autograd.Function):
    """Whole time loop in one autograd node: no graph per step, adjoint backward."""

    @staticmethod
    def forward(ctx, x_seq, v, k, thresholds, params: LIFParameters):
        spikes, v_last, h_seq, v_th_seq, sigma_seq = run_steps(
            partial(lif_step, k=k, params=params), x_seq, v, thresholds, keep_charged=True
        )
        ctx.params = params
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
        p, k = ctx.params, ctx.k
        learn_k = x_seq is not None
        dtype = h_seq.dtype
        acc = backward_dtype(dtype)
        k_val = k.detach().to(acc) if isinstance(k, torch.Tensor) else k
        v_rest = 0.0 if p.v_reset is None else p.v_reset
        grad_x = torch.empty_like(h_seq)  # each step's float32 gradient rounded once on store
        grad_u = torch.zeros_like(h_seq[0], dtype=acc) if grad_v is None else grad_v.to(acc)
        grad_k = torch.zeros((), dtype=acc, device=h_seq.device) if learn_k else None
        for t in range(h_seq.shape[0] - 1, -1, -1):
            z = (h_seq[t] - v_th_seq[t]).to(acc)  # the forward's z, rounded to the storage dtype
            v_th = v_th_seq[t].to(acc)
            sigma = None if sigma_seq is None else sigma_seq[t].to(acc)
            sg = spike_derivative(p.surrogate_function, z, sigma)
            # d u_t / d h_t through the reset
            if p.v_reset is None:
                du_dh = 1.0 if p.detach_reset else 1.0 - v_th * sg
            else:
                du_dh = 1.0 - (z >= 0).to(acc)
                if not p.detach_reset:
                    du_dh = du_dh + (p.v_reset - h_seq[t].to(acc)) * sg
            grad_h = grad_u * du_dh
            if grad_spikes is not None:
                grad_h = grad_h + grad_spikes[t].to(acc) * sg
            grad_x[t] = grad_h * k_val if p.decay_input else grad_h
            if learn_k:
                if t > 0:  # u_{t-1} as the forward rounded it
                    h_prev = h_seq[t - 1]
                    s_prev = (h_prev >= v_th_seq[t - 1]).to(dtype)
                    u_prev = neuron_reset(h_prev, s_prev, v_th_seq[t - 1], p.v_reset, False)
                else:
                    u_prev = v_init
                u_prev = u_prev.to(acc)
                dh_dk = x_seq[t].to(acc) - (u_prev - v_rest) if p.decay_input else v_rest - u_prev
                grad_k = grad_k + (grad_h * dh_dk).sum()
            grad_u = grad_h * (1.0 - k_val)
        return grad_x, grad_u.to(dtype), None if grad_k is None else grad_k.to(dtype), None, None


def lif_multi_step(x_seq: torch.Tensor, v: torch.Tensor, k, thresholds, params: LIFParameters):
    r""":func:`lif_step` over a sequence.

    :param x_seq: input currents ``[T, N, *]``
    :param v: initial membrane ``[N, *]``
    :param k: ``1/tau`` (float, or a 0-d tensor for a learnable tau)
    :param thresholds: ``None`` (adaptive), a float (fixed), or a tensor
        ``[T]`` / ``[T, 1, C, 1, ...]`` of per-step thresholds (evaluation mode)
    :param params: the options; ``dims`` index the per-step tensor ``[N, *]``
    :return: ``(spike_seq [T, N, *], v_T [N, *], v_th_seq, sigma_seq)``; the
        last two are ``[T]`` (layer statistics) or ``[T, 1, C, 1, ...]``
        (channel statistics), detached; ``sigma_seq`` is ``None`` when neither
        the threshold nor the surrogate needs :math:`\sigma_t`

    The loop is one autograd node with the adjoint backward (module docstring)
    for the plain LIF charge and a surrogate in spiking mode with a closed-form
    derivative (:func:`sj_ext.surrogate.has_closed_form`); otherwise (a chain of
    groups, ``spiking=False``, a surrogate without a closed form, a plain
    callable) autograd differentiates it step by step.
    """
    sg = params.surrogate_function
    if getattr(sg, "spiking", False) and chain_length(params) == 1:
        if has_closed_form(sg):
            return _AdjointLIF.apply(x_seq, v, k, thresholds, params)
        _warn_no_closed_form(sg)
    spikes, v, _, v_th_seq, sigma_seq = run_steps(
        partial(lif_step, k=k, params=params), x_seq, v, thresholds
    )
    return spikes, v, v_th_seq, sigma_seq


def _warn_no_closed_form(surrogate_function):
    """Once per surrogate class, in eager mode (Dynamo cannot trace ``warnings.warn``)."""
    kind = type(surrogate_function)
    if kind not in _warned and not torch.compiler.is_compiling():
        _warned.add(kind)
        warnings.warn(
            f"the surrogate {kind.__qualname__} has no closed-form derivative in "
            "sj_ext.surrogate.DERIVATIVES: the multi-step loop is differentiated step by step "
            "through its own autograd function (a graph per step); register one with "
            f"@sj_ext.surrogate.register_derivative({kind.__qualname__})",
            RuntimeWarning,
            stacklevel=3,
        )
