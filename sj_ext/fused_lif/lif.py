r"""The fused LIF time loop as PyTorch operators over the CUDA kernels.

:func:`lif_multi_step` runs what :func:`sj_ext.functional.lif_multi_step`
computes -- LIF charge
(with DilatedWindowLIF's groups and projection), fire, reset, DS-ATGO's
adaptive threshold, dynamic surrogate widths -- in the kernels of
``kernels/lif_kernels.cu``, forward and backward, with no autograd graph per
step, with the same :class:`~sj_ext.functional.LIFParameters`. The torch
functions are the reference: the tests compare the two.

The kernels are the operators ``torch.ops.sj_ext.fused_lif_forward`` and
``torch.ops.sj_ext.fused_lif_backward`` (``torch.library.custom_op``, as
SpikingJelly registers its own kernels): the forward's autograd formula is the
backward operator, and both have a fake implementation (shapes and dtypes
without running a kernel), so ``torch.compile`` keeps them whole in its graphs
and ``torch.library.opcheck`` checks them. Their arguments are tensors and
numbers; the launcher (CuPy on a GPU, the g++ harness on the CPU) is named by
its key (:func:`~sj_ext.fused_lif.device.launcher_of`).

Saved for the backward: the charged membranes ``h`` ``[T, N, *]``, the
thresholds and :math:`\sigma_t` ``[T]``, and, when a learnable tau needs
them, the input (``decay_input=True``) and the initial membrane (also kept
for a projection between groups).
"""

import math
from functools import lru_cache
from itertools import product

import torch
from torch import Tensor

from ..functional import LIFParameters, chain_length, needs_stats
from .backends import require_launcher
from .coverage import surrogate_spec, unsupported_reason
from .device import launcher_of
from .source import SURROGATE_SHAPES, KernelConfig, acc_dtype

__all__ = [
    "BACKWARD_OP",
    "FORWARD_OP",
    "chain_layout",
    "fused_lif_backward",
    "fused_lif_forward",
    "lif_multi_step",
    "memory_order",
]


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


#: the fused LIF forward and backward as PyTorch operators (``torch.ops.sj_ext``)
FORWARD_OP = "sj_ext::fused_lif_forward"
BACKWARD_OP = "sj_ext::fused_lif_backward"


@torch.library.custom_op(FORWARD_OP, mutates_args=())
def fused_lif_forward(
    x: Tensor,
    v_init: Tensor,
    k: Tensor,
    thresholds: Tensor,
    layout: Tensor | None,
    groups: int,
    projection: str,
    decay_input: bool,
    v_reset: float | None,
    detach_reset: bool,
    theta: float,
    adaptive: bool,
    f_c: float,
    stats: bool,
    keep_h: bool,
    surrogate: str,
    dynamic: bool,
    alpha: float,
    a0: float,
    v0: float,
    launcher: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    r"""The forward of ``T`` steps: ``sj_lif_loop`` (no statistics) or ``sj_lif_step`` per step.

    :param x: input currents ``[T, N, *]``, contiguous, a storage dtype of the kernels
    :param v_init: initial membrane ``[N, *]`` of ``x``'s dtype, contiguous
    :param k: ``1/tau`` ``[1]`` in the arithmetic dtype (:func:`acc_dtype`)
    :param thresholds: ``[T]`` in the arithmetic dtype; ignored when ``adaptive``
    :param layout: :func:`chain_layout` of a chain of ``groups`` groups, else None
    :param stats: whether :math:`\mu_t, \sigma_t` are taken (adaptive threshold or
        dynamic surrogate: :func:`sj_ext.functional.needs_stats`)
    :param keep_h: keep every step's charged membrane (a backward will run)
    :param surrogate: the surrogate in kernel form, with ``dynamic``, ``alpha``,
        ``a0``, ``v0`` (:class:`~sj_ext.fused_lif.coverage.SurrogateSpec`); like
        ``detach_reset``, read by the backward only
    :param launcher: the key of a launcher (:func:`~sj_ext.fused_lif.device.launcher_of`)
    :return: ``(spike [T, N, *], v_T [N, *], h [T, N, *] or [0], v_th [T], sigma [T] or
        [0])``; ``v_th`` and ``sigma`` in the arithmetic dtype
    """
    run = launcher_of(launcher)
    config = KernelConfig(x.dtype, groups, projection)
    blocks, sizes = _grid_and_sizes(run, v_init, x.shape[0], groups)
    common = _forward_tensors(x, v_init, k, thresholds, layout)
    common.update(sizes, **_charge_and_reset(decay_input, v_reset, theta))
    if stats:
        h, sigma = _forward_with_stats(run, config, blocks, common, keep_h, adaptive, f_c)
    else:
        h, sigma = _forward_loop(run, config, blocks, common, keep_h)
    return common["spike"], common["v_out"], h if keep_h else x.new_empty(0), common["vth"], sigma


def _forward_tensors(
    x: Tensor, v_init: Tensor, k: Tensor, thresholds: Tensor, layout: Tensor | None
) -> dict:
    """The tensors every forward kernel reads and writes, by parameter name.

    ``vth`` is a copy of ``thresholds`` (the adaptive kernel writes the thresholds
    it takes); ``spike`` and ``v_out`` are the outputs, still to be written.
    """
    return dict(
        x=x,
        v_init=v_init,
        k=k,
        layout=layout,
        vth=thresholds.clone(),
        spike=torch.empty_like(x),
        v_out=torch.empty_like(v_init),
    )


def _grid_and_sizes(run, step: Tensor, steps: int, groups: int) -> tuple[int, dict]:
    """The blocks to launch for the chains of ``step`` ``[N, *]``, and the sizes every kernel
    reads: ``M`` elements a step, ``L`` chains of ``groups`` groups, ``T`` steps."""
    numel = step.numel()
    chains = numel // groups
    return run.grid(chains, step.device), dict(M=numel, L=chains, T=steps)


def _charge_and_reset(decay_input: bool, v_reset: float | None, theta: float) -> dict:
    """The charge and reset options in the kernels' form (a soft reset: ``hard=0``)."""
    hard = v_reset is not None
    return dict(
        decay_input=int(decay_input),
        hard=int(hard),
        v_reset=v_reset if hard else 0.0,
        theta=theta,
    )


def _forward_with_stats(run, config, blocks: int, common: dict, keep_h, adaptive, f_c):
    r"""``sj_lif_step`` per step (and once more), taking :math:`\mu_t, \sigma_t`: ``(h, sigma)``.

    ``h`` holds every step's charged membrane with ``keep_h``, else the last one
    only; ``sigma`` is ``[T]`` in the arithmetic dtype.
    """
    x, v_init, steps = common["x"], common["v_init"], common["T"]
    device = x.device
    h = x.new_empty((steps if keep_h else 1, *v_init.shape))
    sigma = torch.empty(steps, dtype=acc_dtype(x.dtype), device=device)
    run(
        config,
        "sj_lif_step",
        blocks,
        device,
        sweep=("t", range(steps + 1)),
        **common,
        h=h,
        sigma=sigma,
        partials=torch.empty(3 * blocks, dtype=torch.float64, device=device),
        counters=torch.zeros(steps, dtype=torch.int32, device=device),
        h_keep=int(keep_h),
        adaptive=int(adaptive),
        f_c=f_c,
    )
    return h, sigma


def _forward_loop(run, config, blocks: int, common: dict, keep_h: bool):
    """``sj_lif_loop``: all ``T`` steps in one launch, without statistics: ``(h, sigma)``.

    ``h`` holds every step's charged membrane with ``keep_h`` (else None);
    ``sigma`` is empty.
    """
    h = torch.empty_like(common["x"]) if keep_h else None
    run(config, "sj_lif_loop", blocks, common["x"].device, **common, h=h)
    return h, common["vth"].new_empty(0)


@fused_lif_forward.register_fake
def _forward_fake(x, v_init, k, thresholds, layout, groups, projection, decay_input, v_reset,
                  detach_reset, theta, adaptive, f_c, stats, keep_h, surrogate, dynamic, alpha,
                  a0, v0, launcher):  # fmt: skip
    return (
        torch.empty_like(x),
        torch.empty_like(v_init),
        x.new_empty(x.shape if keep_h else (0,)),
        torch.empty_like(thresholds),
        thresholds.new_empty(thresholds.shape if stats else (0,)),
    )


@torch.library.custom_op(BACKWARD_OP, mutates_args=())
def fused_lif_backward(
    h: Tensor,
    x: Tensor | None,
    v_init: Tensor | None,
    k: Tensor,
    layout: Tensor | None,
    vth: Tensor,
    sigma: Tensor | None,
    grad_spike: Tensor | None,
    grad_v: Tensor | None,
    groups: int,
    projection: str,
    decay_input: bool,
    v_reset: float | None,
    detach_reset: bool,
    theta: float,
    surrogate: str,
    dynamic: bool,
    alpha: float,
    a0: float,
    v0: float,
    learn_k: bool,
    launcher: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """The adjoint recurrence of ``T`` steps (``sj_lif_backward``).

    Takes what :func:`fused_lif_forward` kept (``h``, ``v_th``, ``sigma``; the
    input when a learnable tau needs it, the initial membrane for that or for a
    projection between groups), the incoming gradients (None: zero) and the
    surrogate in kernel form (:class:`~sj_ext.fused_lif.coverage.SurrogateSpec`).

    :return: ``(grad_x [T, N, *], grad_v_init [N, *], grad_k)``; ``grad_k`` ``[1]``
        in ``k``'s dtype (its per-block float64 sums added), ``[0]`` without ``learn_k``
    """
    run = launcher_of(launcher)
    blocks, sizes = _grid_and_sizes(run, h[0], h.shape[0], groups)
    grads = _gradient_buffers(h, blocks, learn_k)
    saved = dict(h=h, x=x, v_init=v_init, k=k, layout=layout, vth=vth, sigma=sigma)
    incoming = dict(grad_spike=grad_spike, grad_v=grad_v)
    options = dict(sizes, detach_reset=int(detach_reset))
    options.update(_charge_and_reset(decay_input, v_reset, theta))
    options.update(_surrogate_args(surrogate, dynamic, alpha, a0, v0))
    config = KernelConfig(h.dtype, groups, projection)
    run(config, "sj_lif_backward", blocks, h.device, **saved, **incoming, **grads, **options)
    grad_k = grads["grad_k"]
    grad_k = k.new_empty(0) if grad_k is None else grad_k.sum().to(k.dtype).reshape(1)
    return grads["grad_x"], grads["grad_v_init"], grad_k


def _gradient_buffers(h: Tensor, blocks: int, learn_k: bool) -> dict:
    """What the backward kernel writes: ``grad_x``, ``grad_v_init`` and ``grad_k``.

    ``grad_k`` holds a float64 sum per block with ``learn_k``, else is None.
    """
    grad_k = torch.empty(blocks, dtype=torch.float64, device=h.device) if learn_k else None
    return dict(grad_x=torch.empty_like(h), grad_v_init=torch.empty_like(h[0]), grad_k=grad_k)


def _surrogate_args(surrogate: str, dynamic: bool, alpha: float, a0: float, v0: float) -> dict:
    """The surrogate in kernel form (:class:`~sj_ext.fused_lif.coverage.SurrogateSpec`)
    as the backward kernel's ``sg_*`` arguments."""
    return dict(
        sg_shape=SURROGATE_SHAPES[surrogate],
        sg_dynamic=int(dynamic),
        sg_alpha=alpha,
        sg_a0=a0,
        sg_v0=v0,
    )


@fused_lif_backward.register_fake
def _backward_fake(h, x, v_init, k, layout, vth, sigma, grad_spike, grad_v, groups, projection,
                   decay_input, v_reset, detach_reset, theta, surrogate, dynamic, alpha, a0, v0,
                   learn_k, launcher):  # fmt: skip
    return torch.empty_like(h), torch.empty_like(h[0]), k.new_empty((1,) if learn_k else (0,))


#: the arguments of :func:`fused_lif_forward`, in order (``setup_context`` gets them so)
FORWARD_ARGS = (
    "x", "v_init", "k", "thresholds", "layout", "groups", "projection", "decay_input",
    "v_reset", "detach_reset", "theta", "adaptive", "f_c", "stats", "keep_h", "surrogate",
    "dynamic", "alpha", "a0", "v0", "launcher",
)  # fmt: skip
#: the forward's options that :func:`fused_lif_backward` takes too, by the same names
SHARED_OPTIONS = (
    "groups", "projection", "decay_input", "v_reset", "detach_reset", "theta", "surrogate",
    "dynamic", "alpha", "a0", "v0", "launcher",
)  # fmt: skip


def _setup_context(ctx, inputs, output):
    """Save what :func:`fused_lif_backward` reads, its options by name."""
    given = dict(zip(FORWARD_ARGS, inputs, strict=True))
    _, _, h, vth, sigma = output
    learn_k = ctx.needs_input_grad[FORWARD_ARGS.index("k")]
    ctx.options = {name: given[name] for name in SHARED_OPTIONS} | {"learn_k": learn_k}
    ctx.save_for_backward(
        h,
        given["x"] if learn_k and given["decay_input"] else None,
        given["v_init"] if learn_k or given["groups"] > 1 else None,
        given["k"],
        given["layout"],
        vth,
        sigma if given["stats"] else None,
    )
    ctx.mark_non_differentiable(h, vth, sigma)
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_spike, grad_v, _grad_h, _grad_vth, _grad_sigma):
    """The forward's autograd formula: gradients of ``x``, ``v_init`` and ``k`` (None for the
    forward's other arguments)."""
    h, x, v_init, k, layout, vth, sigma = ctx.saved_tensors
    grad_spike, grad_v = (
        None if g is None else g.to(h.dtype).contiguous() for g in (grad_spike, grad_v)
    )
    grad_x, grad_v_init, grad_k = fused_lif_backward(
        h, x, v_init, k, layout, vth, sigma, grad_spike, grad_v, **ctx.options
    )
    grad_k = grad_k if ctx.options["learn_k"] else None
    return grad_x, grad_v_init, grad_k, *([None] * (len(FORWARD_ARGS) - 3))


fused_lif_forward.register_autograd(_backward, setup_context=_setup_context)


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
    params: LIFParameters, groups: int, adaptive: bool, stats: bool, keep_h: bool, launcher: int
) -> dict:
    """The options of :func:`fused_lif_forward` (its arguments after ``layout``), by name.

    :param groups: the chain length (:func:`sj_ext.functional.chain_length`); the
        projection is ``'none'`` without a chain
    """
    spec = surrogate_spec(params.surrogate_function)
    return dict(
        groups=groups,
        projection=params.projection if groups > 1 else "none",
        decay_input=params.decay_input,
        v_reset=params.v_reset,
        detach_reset=params.detach_reset,
        theta=params.theta,
        adaptive=adaptive,
        f_c=params.f_c,
        stats=stats,
        keep_h=keep_h,
        surrogate=spec.shape,
        dynamic=spec.dynamic,
        alpha=float(spec.alpha),
        a0=float(spec.a0),
        v0=float(spec.v0),
        launcher=launcher,
    )
