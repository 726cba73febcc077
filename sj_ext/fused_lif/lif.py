r"""The plan of a fused call: :func:`lif_multi_step` over the operators of :mod:`.ops`.

:func:`lif_multi_step` runs what :func:`sj_ext.functional.lif_multi_step`
computes -- LIF charge
(with DilatedWindowLIF's groups and projection), fire, reset, DS-ATGO's
adaptive threshold, dynamic surrogate widths -- in the fused kernels, forward
and backward, with no autograd graph per step, with the same
:class:`~sj_ext.functional.LIFParameters`. The torch functions are the
reference: the tests compare the two. Here: the options in the kernels' form,
the layout table of grouped chains, the memory order of the input; the
kernels run inside the operators ``torch.ops.sj_ext.fused_lif_forward`` /
``fused_lif_backward`` (:mod:`sj_ext.fused_lif.ops`).
"""

import math
from functools import lru_cache
from itertools import product

import torch
from torch import Tensor

from ..functional import LIFParameters, chain_length, needs_stats
from .backends import require_launcher
from .coverage import surrogate_spec, unsupported_reason
from .ops import fused_lif_forward
from .source import acc_dtype

__all__ = ["chain_layout", "lif_multi_step", "memory_order"]


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


def lif_multi_step(
    x_seq: torch.Tensor,
    v: torch.Tensor,
    k,
    thresholds,
    params: LIFParameters,
    launcher: int | None = None,
):
    r""":func:`sj_ext.functional.lif_multi_step` in the fused kernels.

    The same maths and options (``params``: every grouping, window and named
    projection; ``stats='layer'`` and no ``stats_group`` where statistics
    are taken), forward and backward, through the operator
    ``torch.ops.sj_ext.fused_lif_forward`` and its registered autograd formula
    (``fused_lif_backward``), which ``torch.compile`` keeps in its graphs.

    :param x_seq: input currents ``[T, N, *]`` (float32, float64, float16, bfloat16)
    :param v: initial membrane ``[N, *]``
    :param k: ``1/tau`` (float, or a 0-d tensor for a learnable tau)
    :param thresholds: ``None`` (adaptive :math:`f_c(\mu_t + \sigma_t)`), a
        float, or a tensor ``[T]`` of per-step thresholds (evaluation mode)
    :param params: the options; its ``dims`` checked by the caller
    :param launcher: the ``key`` of a launcher (default: the fused backend of
        ``x_seq``'s device, :func:`~sj_ext.fused_lif.backends.require_launcher`), e.g.
        a :class:`~sj_ext.fused_lif.host.HostLauncher`'s (the CPU check harness)
    :return: ``(spike_seq [T, N, *], v_T [N, *], v_th_seq [T], sigma_seq [T] or None)``
    :raises ValueError: options the kernels do not cover (:func:`unsupported_reason`)
    """
    if launcher is None:
        launcher = require_launcher(x_seq, "cupy" if x_seq.is_cuda else "cpu")
    stats = _check_covered(x_seq, v, thresholds, params)
    chain_groups = chain_length(params)
    layout = _layout(x_seq, params) if chain_groups > 1 else None
    # elementwise kernels (no layout table) run in the input's own memory order
    order = memory_order(x_seq) if layout is None else None
    x_seq, v = _permute(x_seq, v, order)
    dtype = x_seq.dtype
    learns_k = isinstance(k, torch.Tensor) and k.requires_grad
    keep_h = torch.is_grad_enabled() and (x_seq.requires_grad or v.requires_grad or learns_k)
    options = _options(params, chain_groups, thresholds is None, stats, keep_h, launcher)
    spikes, v_last, _, v_th_seq, sigma_seq = fused_lif_forward(
        x_seq.contiguous(),
        v.to(dtype).contiguous(),
        _k_tensor(k, x_seq),
        _threshold_tensor(thresholds, x_seq),
        layout,
        **options,
    )
    spikes, v_last = _permute(spikes, v_last, _inverse(order))  # the caller's dims again
    return spikes, v_last, v_th_seq.to(dtype), sigma_seq.to(dtype) if stats else None


def _permute(seq: Tensor, step: Tensor, order: list[int] | None) -> tuple[Tensor, Tensor]:
    """``seq`` ``[T, N, *]`` permuted by ``order``, and ``step`` ``[N, *]`` alike (None: as is)."""
    if order is None:
        return seq, step
    return seq.permute(order), step.permute(_step_dims(order))


def _inverse(order: list[int] | None) -> list[int] | None:
    """The permutation that undoes ``order`` (None for None)."""
    return None if order is None else sorted(range(len(order)), key=order.__getitem__)


def _check_covered(x_seq: Tensor, v: Tensor, thresholds, params: LIFParameters) -> bool:
    """Whether the call takes layer statistics, once the kernels are known to cover it.

    :raises ValueError: options the kernels do not cover, or statistics over fewer
        than 2 membrane elements
    """
    reason = unsupported_reason(x_seq, thresholds, params)
    if reason is not None:
        raise ValueError(f"the fused kernels do not cover {reason}")
    stats = needs_stats(thresholds, params.surrogate_function)
    if stats and v.numel() < 2:
        raise ValueError(
            f"layer statistics over a membrane of shape {tuple(v.shape)} have {v.numel()} "
            "element; the standard deviation needs at least 2"
        )
    return stats


def _layout(x_seq: Tensor, params: LIFParameters) -> Tensor | None:
    """The :func:`chain_layout` of ``params``' groups over a step of ``x_seq``."""
    step_shape = tuple(x_seq.shape[1:])
    return chain_layout(step_shape, params.dims, params.groups, params.window, x_seq.device)


def _k_tensor(k, x_seq: Tensor) -> Tensor:
    """``k`` as the operator takes it: ``[1]`` in the arithmetic dtype of ``x_seq``.

    A tensor ``k`` is rounded to ``x_seq``'s dtype first, as the reference's 0-d
    tensor ``k`` is in the op's dtype; it keeps its autograd graph.
    """
    acc = acc_dtype(x_seq.dtype)
    if isinstance(k, torch.Tensor):
        return k.to(x_seq.dtype).to(acc).reshape(1)
    return torch.full((1,), k, dtype=acc, device=x_seq.device)


def _threshold_tensor(thresholds, x_seq: Tensor) -> Tensor:
    """The thresholds ``[T]`` in the arithmetic dtype, rounded through ``x_seq``'s dtype
    (zeros for the adaptive threshold, which the kernel writes)."""
    dtype, acc, steps = x_seq.dtype, acc_dtype(x_seq.dtype), x_seq.shape[0]
    if thresholds is None:
        return torch.zeros(steps, dtype=acc, device=x_seq.device)
    if isinstance(thresholds, torch.Tensor):
        return thresholds.detach().to(dtype).to(acc).reshape(steps)
    return torch.full((steps,), thresholds, dtype=dtype, device=x_seq.device).to(acc)


def _options(
    params: LIFParameters,
    chain_length: int,
    adaptive: bool,
    stats: bool,
    keep_h: bool,
    launcher: int,
) -> dict:
    """The options of :func:`fused_lif_forward` (its arguments after ``layout``), by name.

    :param chain_length: :func:`sj_ext.functional.chain_length` of ``params``; the
        projection is ``'none'`` without a chain
    """
    spec = surrogate_spec(params.surrogate_function)
    return dict(
        chain_length=chain_length,
        projection=params.projection if chain_length > 1 else "none",
        decay_input=params.decay_input,
        v_reset=params.v_reset,
        detach_reset=params.detach_reset,
        theta=params.theta,
        adaptive=adaptive,
        f_c=params.f_c,
        take_stats=stats,
        keep_h=keep_h,
        surrogate=spec.shape,
        dynamic=spec.dynamic,
        alpha=float(spec.alpha),
        a0=float(spec.a0),
        v0=float(spec.v0),
        launcher=launcher,
    )
