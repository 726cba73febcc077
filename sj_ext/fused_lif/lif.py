r"""The fused LIF time loop as an autograd function over the CUDA kernels.

:func:`lif_multi_step` runs what :func:`sj_ext.functional.lif_multi_step`
computes -- LIF charge
(with DilatedWindowLIF's groups and projection), fire, reset, DS-ATGO's
adaptive threshold, dynamic surrogate widths -- in the kernels of
``kernels/lif_kernels.cu``, forward and backward, with no autograd graph per
step, with the same :class:`~sj_ext.functional.LIFParameters`. The torch
functions are the reference: the tests compare the two.

Saved for the backward: the charged membranes ``h`` ``[T, N, *]``, the
thresholds and :math:`\sigma_t` ``[T]``, and, when a learnable tau needs
them, the input (``decay_input=True``) and the initial membrane (also kept
for a projection between groups).
"""

import math
from dataclasses import dataclass
from functools import lru_cache
from itertools import product

import torch
from torch.autograd.function import once_differentiable

from ..functional import LIFParameters, chain_length, needs_stats
from .coverage import SurrogateSpec, surrogate_spec, unsupported_reason
from .device import require_launcher
from .source import SURROGATE_SHAPES, KernelConfig, acc_dtype

__all__ = ["chain_layout", "memory_order", "lif_multi_step"]


@lru_cache(maxsize=64)
def chain_layout(step_shape, dims, groups, window: str, device) -> torch.Tensor | None:
    """The kernels' layout table for groups of a contiguous per-step tensor (``None``: ungrouped).

    Chain ``c`` (row-major over the group shape of
    :func:`sj_ext.functional.grouping.group_views`) holds the element at local
    position ``c`` of every group; its offset in group ``g`` is
    ``base(c) + goff[g]``. The table is ``[R, sizes (R), strides (R), goff (G)]``
    (int64 on ``device``), ``base(c)`` decoded from ``c`` over the sizes.
    """
    if not dims or math.prod(groups) == 1:
        return None
    strides = [math.prod(step_shape[d + 1 :]) for d in range(len(step_shape))]
    grid = dict(zip(dims, groups, strict=True))
    sizes, chain_strides, group_strides = [], [], []
    for d, size in enumerate(step_shape):
        g = grid.get(d, 1)
        sizes.append(size // g)
        if window == "block":  # position a * (size / g) + i
            chain_strides.append(strides[d])
            group_strides.append(strides[d] * (size // g))
        else:  # dilated: position i * g + a
            chain_strides.append(strides[d] * g)
            group_strides.append(strides[d])
    # merge runs of dims that are contiguous in the chain index space
    merged_sizes, merged_strides = [sizes[0]], [chain_strides[0]]
    for size, stride in zip(sizes[1:], chain_strides[1:], strict=True):
        if merged_strides[-1] == stride * size:
            merged_sizes[-1] *= size
            merged_strides[-1] = stride
        else:
            merged_sizes.append(size)
            merged_strides.append(stride)
    goff = [
        sum(a * group_strides[d] for a, d in zip(index, dims, strict=True))
        for index in product(*(range(g) for g in groups))
    ]
    table = [len(merged_sizes), *merged_sizes, *merged_strides, *goff]
    return torch.tensor(table, dtype=torch.int64, device=device)


def memory_order(x: torch.Tensor) -> list[int] | None:
    """The dims of ``x`` ``[T, N, *]`` in its memory order, when it is dense but not contiguous.

    ``order[0] == 0`` (time outermost) and ``x.permute(order)`` is contiguous:
    a channels-last ``[T, N, C, H, W]`` gives ``[0, 1, 3, 4, 2]``. ``None`` for a
    contiguous ``x``, or one no permutation makes contiguous (a slice, say).
    """
    if x.is_contiguous():
        return None
    order = [0, *sorted(range(1, x.dim()), key=lambda d: -x.stride(d))]
    return order if x.permute(order).is_contiguous() else None


def _step_dims(order: list[int]) -> list[int]:
    """The permutation of one step ``[N, *]`` within ``order`` of ``[T, N, *]``."""
    return [d - 1 for d in order[1:]]


@dataclass(frozen=True)
class _Plan:
    """Everything of a call but the tensors."""

    launcher: object
    config: KernelConfig
    layout: torch.Tensor | None
    params: LIFParameters
    spec: SurrogateSpec
    keep_h: bool  # a backward will run: keep every step's h


class _FusedLIF(torch.autograd.Function):
    """Forward ``sj_lif_loop`` (no statistics) or ``sj_lif_step`` per step; ``sj_lif_backward``."""

    @staticmethod
    def forward(ctx, x_seq, v, k, thresholds, plan: _Plan):
        launcher, config = plan.launcher, plan.config
        device, dtype, acc = x_seq.device, x_seq.dtype, acc_dtype(x_seq.dtype)
        steps, numel = x_seq.shape[0], v.numel()
        x = x_seq.contiguous()
        v_init = v.to(dtype).contiguous()
        if isinstance(k, torch.Tensor):  # as the reference's 0-d tensor k in the op's dtype
            k_buf = k.detach().to(dtype).to(acc).reshape(1)
        else:
            k_buf = torch.full((1,), k, dtype=acc, device=device)
        if thresholds is None:
            vth = torch.empty(steps, dtype=acc, device=device)
        elif isinstance(thresholds, torch.Tensor):
            vth = thresholds.detach().to(dtype).to(acc, copy=True).reshape(steps)
        else:
            vth = torch.full((steps,), thresholds, dtype=dtype, device=device).to(acc)
        chains = numel // config.groups
        blocks = launcher.grid(chains, device)
        p = plan.params
        hard = p.v_reset is not None
        common = dict(
            x=x,
            v_init=v_init,
            k=k_buf,
            layout=plan.layout,
            vth=vth,
            spike=torch.empty_like(x),
            v_out=torch.empty_like(v_init),
            M=numel,
            L=chains,
            T=steps,
            decay_input=int(p.decay_input),
            hard=int(hard),
            v_reset=p.v_reset if hard else 0.0,
            theta=p.theta,
        )
        if needs_stats(thresholds, p.surrogate_function):
            if numel < 2:
                raise ValueError(
                    f"layer statistics over a membrane of shape {tuple(v.shape)} have {numel} "
                    "element; the standard deviation needs at least 2"
                )
            h = torch.empty((steps if plan.keep_h else 1, *v.shape), dtype=dtype, device=device)
            sigma = torch.empty(steps, dtype=acc, device=device)
            partials = torch.empty(3 * blocks, dtype=torch.float64, device=device)
            counters = torch.zeros(steps, dtype=torch.int32, device=device)
            launcher(
                config,
                "sj_lif_step",
                blocks,
                device,
                sweep=("t", range(steps + 1)),
                **common,
                h=h,
                sigma=sigma,
                partials=partials,
                counters=counters,
                h_keep=int(plan.keep_h),
                adaptive=int(thresholds is None),
                f_c=p.f_c,
            )
        else:
            h = torch.empty_like(x) if plan.keep_h else None
            sigma = None
            launcher(config, "sj_lif_loop", blocks, device, **common, h=h)
        learn_k = isinstance(k, torch.Tensor) and ctx.needs_input_grad[2]
        ctx.plan, ctx.blocks = plan, blocks
        ctx.k_meta = (k.dtype, k.shape) if learn_k else None
        ctx.save_for_backward(
            h if plan.keep_h else None,
            vth,
            sigma,
            x if learn_k and p.decay_input else None,
            v_init if learn_k or config.groups > 1 else None,
            k_buf,
        )
        v_th_seq = vth.to(dtype)
        sigma_seq = None if sigma is None else sigma.to(dtype)
        ctx.mark_non_differentiable(*(t for t in (v_th_seq, sigma_seq) if t is not None))
        return common["spike"], common["v_out"], v_th_seq, sigma_seq

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_spikes, grad_v, _grad_v_th, _grad_sigma):
        h, vth, sigma, x, v_init, k_buf = ctx.saved_tensors
        plan = ctx.plan
        p = plan.params
        dtype, device = h.dtype, h.device
        numel = h[0].numel()
        chains = numel // plan.config.groups
        grad_x = torch.empty_like(h)
        grad_v_init = torch.empty_like(h[0])
        learn_k = ctx.k_meta is not None
        grad_k = torch.empty(ctx.blocks, dtype=torch.float64, device=device) if learn_k else None
        spec = plan.spec
        plan.launcher(
            plan.config,
            "sj_lif_backward",
            ctx.blocks,
            device,
            h=h,
            x=x,
            v_init=v_init,
            k=k_buf,
            layout=plan.layout,
            vth=vth,
            sigma=sigma,
            grad_spike=None if grad_spikes is None else grad_spikes.to(dtype).contiguous(),
            grad_v=None if grad_v is None else grad_v.to(dtype).contiguous(),
            grad_x=grad_x,
            grad_v_init=grad_v_init,
            grad_k=grad_k,
            T=h.shape[0],
            M=numel,
            L=chains,
            decay_input=int(p.decay_input),
            hard=int(p.v_reset is not None),
            detach_reset=int(p.detach_reset),
            v_reset=0.0 if p.v_reset is None else p.v_reset,
            theta=p.theta,
            sg_shape=SURROGATE_SHAPES[spec.shape],
            sg_dynamic=int(spec.dynamic),
            sg_alpha=spec.alpha,
            sg_a0=spec.a0,
            sg_v0=spec.v0,
        )
        if learn_k:
            grad_k = grad_k.sum().to(ctx.k_meta[0]).reshape(ctx.k_meta[1])
        return grad_x, grad_v_init, grad_k, None, None


def lif_multi_step(
    x_seq: torch.Tensor, v: torch.Tensor, k, thresholds, params: LIFParameters, launcher=None
):
    r""":func:`sj_ext.functional.lif_multi_step` in the fused kernels.

    The same maths and options (``params``: every grouping, window and named
    projection; ``stats='layer'`` and no ``stats_group`` where statistics
    are taken), forward and backward.

    :param x_seq: input currents ``[T, N, *]`` (float32, float64, float16, bfloat16)
    :param v: initial membrane ``[N, *]``
    :param k: ``1/tau`` (float, or a 0-d tensor for a learnable tau)
    :param thresholds: ``None`` (adaptive :math:`f_c(\mu_t + \sigma_t)`), a
        float, or a tensor ``[T]`` of per-step thresholds (evaluation mode)
    :param params: the options; its ``dims`` checked by the caller
    :param launcher: :class:`~sj_ext.fused_lif.device.CupyLauncher` (default, for CUDA
        tensors) or :class:`~sj_ext.fused_lif.host.HostLauncher` (the CPU harness)
    :return: ``(spike_seq [T, N, *], v_T [N, *], v_th_seq [T], sigma_seq [T] or None)``
    :raises ValueError: options the kernels do not cover (:func:`unsupported_reason`)
    """
    if launcher is None:
        launcher = require_launcher(x_seq)
    reason = unsupported_reason(x_seq, thresholds, params)
    if reason is not None:
        raise ValueError(f"the fused kernels do not cover {reason}")
    chain_groups = chain_length(params)
    projection = params.projection if chain_groups > 1 else "none"
    config = KernelConfig(x_seq.dtype, chain_groups, projection)
    layout = (
        chain_layout(
            tuple(x_seq.shape[1:]), params.dims, params.groups, params.window, x_seq.device
        )
        if chain_groups > 1
        else None
    )
    # elementwise kernels (no layout table) run in the input's own memory order
    order = memory_order(x_seq) if layout is None else None
    if order is not None:
        x_seq, v = x_seq.permute(order), v.permute(_step_dims(order))
    needs_grad = isinstance(k, torch.Tensor) and k.requires_grad
    plan = _Plan(
        launcher=launcher,
        config=config,
        layout=layout,
        params=params,
        spec=surrogate_spec(params.surrogate_function),
        keep_h=torch.is_grad_enabled() and (x_seq.requires_grad or v.requires_grad or needs_grad),
    )
    spikes, v_last, v_th_seq, sigma_seq = _FusedLIF.apply(x_seq, v, k, thresholds, plan)
    if order is not None:  # back to the caller's dims, the memory order kept
        back = sorted(range(len(order)), key=order.__getitem__)
        spikes, v_last = spikes.permute(back), v_last.permute(_step_dims(back))
    return spikes, v_last, v_th_seq, sigma_seq
