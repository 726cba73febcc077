r"""The fused LIF time loop as an autograd function over the CUDA kernels.

:func:`lif_multi_step` runs what :func:`sj_ext.functional.adaptive_lif_multi_step`
and :func:`sj_ext.functional.grouped_lif_multi_step` compute -- LIF charge
(with DilatedWindowLIF's groups and projection), fire, reset, DS-ATGO's
adaptive threshold, dynamic surrogate widths -- in the kernels of
``kernels/lif_kernels.cu``, forward and backward, with no autograd graph per
step. Those torch functions are the reference: the tests compare the two.

Saved for the backward: the charged membranes ``h`` ``[T, N, *]``, the
thresholds and :math:`\sigma_t` ``[T]``, and, when a learnable tau needs
them, the input (``decay_input=True``) and the initial membrane (also kept
for a projection between groups).
"""

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from itertools import product

import torch
from spikingjelly.activation_based import surrogate as sj_surrogate
from torch.autograd.function import once_differentiable

from ..surrogate import DynamicATan, DynamicRect, DynamicSigmoid
from .source import DTYPES, SURROGATE_SHAPES, KernelConfig, acc_dtype

__all__ = [
    "SurrogateSpec",
    "surrogate_spec",
    "chain_layout",
    "unsupported_reason",
    "warn_fallback",
    "lif_multi_step",
]


@dataclass(frozen=True)
class SurrogateSpec:
    r"""A surrogate as the kernels take it (``sj_surrogate_grad``, ``sj_width``).

    Derivative at :math:`z = h - V_{th}` for width :math:`a` and sharpness
    :math:`\alpha_t = \alpha / a`, with :math:`a = a_0 (1 + \tanh(\sigma_t - v_0))`
    when ``dynamic``, else :math:`a = a_0`.
    """

    shape: str  # a key of source.SURROGATE_SHAPES
    dynamic: bool
    alpha: float
    a0: float
    v0: float


def surrogate_spec(fn) -> SurrogateSpec | None:
    """The kernel form of surrogate ``fn``, or ``None`` when the kernels do not have its shape.

    Covered (with ``spiking=True``): :class:`~sj_ext.surrogate.DynamicRect`,
    :class:`~sj_ext.surrogate.DynamicATan`, :class:`~sj_ext.surrogate.DynamicSigmoid`
    and SpikingJelly's ``Rect``, ``ATan``, ``Sigmoid`` (exact classes: a
    subclass may change the maths).
    """
    if not getattr(fn, "spiking", False):
        return None
    kind = type(fn)
    if kind is DynamicRect:
        return SurrogateSpec("rect", True, 1.0, fn.a0, fn.v0)
    if kind is DynamicATan:
        return SurrogateSpec("atan", True, fn.alpha, fn.a0, fn.v0)
    if kind is DynamicSigmoid:
        return SurrogateSpec("sigmoid", True, fn.alpha, fn.a0, fn.v0)
    if kind is sj_surrogate.Rect:  # alpha 1[|x| < 1 / (2 alpha)]: width 1 / alpha
        return SurrogateSpec("rect", False, 1.0, 1.0 / fn.alpha, 0.0)
    if kind is sj_surrogate.ATan:
        return SurrogateSpec("atan", False, fn.alpha, 1.0, 0.0)
    if kind is sj_surrogate.Sigmoid:
        return SurrogateSpec("sigmoid", False, fn.alpha, 1.0, 0.0)
    return None


def _chain_groups(groups, projection) -> int:
    """Groups per kernel chain: 1 when the groups are independent (as ``grouped_charge``)."""
    return 1 if projection == "none" or math.prod(groups) == 1 else math.prod(groups)


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


def _needs_stats(thresholds, spec: SurrogateSpec) -> bool:
    """Whether :math:`\\mu_t, \\sigma_t` are taken (as ``fire_and_reset`` decides)."""
    return thresholds is None or spec.dynamic


def unsupported_reason(
    x_seq: torch.Tensor,
    thresholds,
    *,
    stats: str,
    stats_group,
    surrogate_function,
    groups=(),
    projection="none",
) -> str | None:
    """Why the fused kernels do not cover these options (then the torch backend runs), or None.

    Not covered: dtypes other than float32 / float64 / float16 / bfloat16; a
    surrogate without a kernel form (:func:`surrogate_spec`); a callable
    projection; per-channel statistics or thresholds (``stats='channel'``) and
    statistics synced across processes (``stats_group``) whenever statistics
    are taken.
    """
    if x_seq.dtype not in DTYPES:
        return f"inputs of dtype {x_seq.dtype}"
    spec = surrogate_spec(surrogate_function)
    if spec is None:
        return (
            f"the surrogate {surrogate_function!r} (kernels: sj_ext's DynamicRect / DynamicATan / "
            "DynamicSigmoid, SpikingJelly's Rect / ATan / Sigmoid, with spiking=True)"
        )
    if callable(projection) and _chain_groups(groups, "callable") > 1:
        return "a callable projection (kernels: 'sine', 'add', 'none')"
    per_step = isinstance(thresholds, torch.Tensor) and thresholds.numel() != x_seq.shape[0]
    if stats == "channel" and (_needs_stats(thresholds, spec) or per_step):
        return "per-channel statistics (stats='channel')"
    if stats_group is not None and _needs_stats(thresholds, spec):
        return "statistics synced across processes (stats_group)"
    return None


_warned: set[str] = set()


def warn_fallback(who: str, reason: str):
    """Warn once per process and message that ``who`` runs on the torch backend, and why."""
    message = (
        f"{who}(backend='cupy'): the fused kernels do not cover {reason}; it runs the torch backend"
    )
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


@dataclass(frozen=True)
class _Plan:
    """Everything of a call but the tensors."""

    launcher: object
    config: KernelConfig
    layout: torch.Tensor | None
    decay_input: bool
    v_reset: float | None
    f_c: float
    detach_reset: bool
    theta: float
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
        hard = plan.v_reset is not None
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
            decay_input=int(plan.decay_input),
            hard=int(hard),
            v_reset=plan.v_reset if hard else 0.0,
            theta=plan.theta,
        )
        if _needs_stats(thresholds, plan.spec):
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
                f_c=plan.f_c,
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
            x if learn_k and plan.decay_input else None,
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
            decay_input=int(plan.decay_input),
            hard=int(plan.v_reset is not None),
            detach_reset=int(plan.detach_reset),
            v_reset=0.0 if plan.v_reset is None else plan.v_reset,
            theta=plan.theta,
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
    x_seq: torch.Tensor,
    v: torch.Tensor,
    k,
    thresholds=None,
    *,
    decay_input: bool,
    v_reset: float | None,
    surrogate_function,
    detach_reset: bool,
    f_c: float = 1.0,
    dims=(),
    groups=(),
    window: str = "block",
    projection="none",
    theta: float = math.pi / 4,
    launcher=None,
):
    r"""LIF over a sequence in the fused kernels (layer-wide statistics).

    The maths of :func:`sj_ext.functional.adaptive_lif_multi_step` (``dims=()``)
    or of :func:`sj_ext.functional.grouped_lif_multi_step` (groups ``groups``
    over ``dims`` of ``[N, *]``, checked by the caller, with ``window`` and a
    named ``projection``), with ``stats='layer'`` and no ``stats_group``.

    :param x_seq: input currents ``[T, N, *]`` (float32, float64, float16, bfloat16)
    :param v: initial membrane ``[N, *]``
    :param k: ``1/tau`` (float, or a 0-d tensor for a learnable tau)
    :param thresholds: ``None`` (adaptive :math:`f_c(\mu_t + \sigma_t)`), a
        float, or a tensor ``[T]`` of per-step thresholds (evaluation mode)
    :param launcher: :class:`~sj_ext.cupy.device.CupyLauncher` (default, for CUDA
        tensors) or :class:`~sj_ext.cupy.host.HostLauncher` (the CPU harness)
    :return: ``(spike_seq [T, N, *], v_T [N, *], v_th_seq [T], sigma_seq [T] or None)``
    :raises ValueError: options the kernels do not cover (:func:`unsupported_reason`)
    """
    if launcher is None:
        from .device import require_launcher

        launcher = require_launcher(x_seq)
    reason = unsupported_reason(
        x_seq,
        thresholds,
        stats="layer",
        stats_group=None,
        surrogate_function=surrogate_function,
        groups=groups,
        projection=projection,
    )
    if reason is not None:
        raise ValueError(f"the fused kernels do not cover {reason}")
    chain_groups = _chain_groups(groups, projection)
    config = KernelConfig(x_seq.dtype, chain_groups, projection if chain_groups > 1 else "none")
    layout = (
        chain_layout(tuple(x_seq.shape[1:]), tuple(dims), tuple(groups), window, x_seq.device)
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
        decay_input=decay_input,
        v_reset=v_reset,
        f_c=f_c,
        detach_reset=detach_reset,
        theta=theta,
        spec=surrogate_spec(surrogate_function),
        keep_h=torch.is_grad_enabled() and (x_seq.requires_grad or v.requires_grad or needs_grad),
    )
    spikes, v_last, v_th_seq, sigma_seq = _FusedLIF.apply(x_seq, v, k, thresholds, plan)
    if order is not None:  # back to the caller's dims, the memory order kept
        back = sorted(range(len(order)), key=order.__getitem__)
        spikes, v_last = spikes.permute(back), v_last.permute(_step_dims(back))
    return spikes, v_last, v_th_seq, sigma_seq
