r"""The fused kernels as PyTorch operators: ``torch.ops.sj_ext.fused_lif_forward`` / ``_backward``.

Both are ``torch.library.custom_op`` s (as SpikingJelly registers its own
kernels): the forward's autograd formula is the backward operator, and both
have a fake implementation (shapes and dtypes without running a kernel), so
``torch.compile`` keeps them whole in its graphs and ``torch.library.opcheck``
checks them. Their arguments are tensors and numbers; the launcher (CuPy on a
GPU, the CPU backend, the g++ harness) is named by its key
(:func:`~sj_ext.fused_lif.device.launcher_of`). :func:`sj_ext.fused_lif.lif.lif_multi_step`
plans a call and calls them.

Saved for the backward: the charged membranes ``h`` ``[T, N, *]``, the
thresholds and :math:`\sigma_t` ``[T]``, and, when a learnable tau needs
them, the input (``decay_input=True``) and the initial membrane (also kept
for a projection between groups).
"""

import torch
from torch import Tensor

from .device import launcher_of
from .source import SURROGATE_SHAPES, KernelConfig, acc_dtype

__all__ = [
    "BACKWARD_OP",
    "FORWARD_ARGS",
    "FORWARD_OP",
    "SHARED_OPTIONS",
    "fused_lif_backward",
    "fused_lif_forward",
]


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
    chain_length: int,
    projection: str,
    decay_input: bool,
    v_reset: float | None,
    detach_reset: bool,
    theta: float,
    adaptive: bool,
    f_c: float,
    take_stats: bool,
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
    :param layout: :func:`chain_layout` of a chain of ``chain_length`` groups, else None
    :param take_stats: whether :math:`\mu_t, \sigma_t` are taken (adaptive threshold or
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
    config = KernelConfig(x.dtype, chain_length, projection)
    blocks, sizes = _grid_and_sizes(run, v_init, x.shape[0], chain_length)
    common = _forward_tensors(x, v_init, k, thresholds, layout)
    common.update(sizes, **_charge_and_reset(decay_input, v_reset, theta))
    if take_stats:
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


def _grid_and_sizes(run, step: Tensor, steps: int, chain_length: int) -> tuple[int, dict]:
    """The blocks to launch for the chains of ``step`` ``[N, *]``, and the sizes every kernel
    reads: ``M`` elements a step, ``L`` chains of ``chain_length`` groups, ``T`` steps."""
    numel = step.numel()
    chains = numel // chain_length
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
def _forward_fake(x, v_init, k, thresholds, layout, chain_length, projection, decay_input, v_reset,
                  detach_reset, theta, adaptive, f_c, take_stats, keep_h, surrogate, dynamic, alpha,
                  a0, v0, launcher):  # fmt: skip
    return (
        torch.empty_like(x),
        torch.empty_like(v_init),
        x.new_empty(x.shape if keep_h else (0,)),
        torch.empty_like(thresholds),
        thresholds.new_empty(thresholds.shape if take_stats else (0,)),
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
    chain_length: int,
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
    blocks, sizes = _grid_and_sizes(run, h[0], h.shape[0], chain_length)
    grads = _gradient_buffers(h, blocks, learn_k)
    saved = dict(h=h, x=x, v_init=v_init, k=k, layout=layout, vth=vth, sigma=sigma)
    incoming = dict(grad_spike=grad_spike, grad_v=grad_v)
    options = dict(sizes, detach_reset=int(detach_reset))
    options.update(_charge_and_reset(decay_input, v_reset, theta))
    options.update(_surrogate_args(surrogate, dynamic, alpha, a0, v0))
    config = KernelConfig(h.dtype, chain_length, projection)
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
def _backward_fake(h, x, v_init, k, layout, vth, sigma, grad_spike, grad_v, chain_length,
                   projection, decay_input, v_reset, detach_reset, theta, surrogate, dynamic,
                   alpha, a0, v0, learn_k, launcher):  # fmt: skip
    return torch.empty_like(h), torch.empty_like(h[0]), k.new_empty((1,) if learn_k else (0,))


#: the arguments of :func:`fused_lif_forward`, in order (``setup_context`` gets them so)
FORWARD_ARGS = (
    "x", "v_init", "k", "thresholds", "layout", "chain_length", "projection", "decay_input",
    "v_reset", "detach_reset", "theta", "adaptive", "f_c", "take_stats", "keep_h", "surrogate",
    "dynamic", "alpha", "a0", "v0", "launcher",
)  # fmt: skip
#: the forward's options that :func:`fused_lif_backward` takes too, by the same names
SHARED_OPTIONS = (
    "chain_length", "projection", "decay_input", "v_reset", "detach_reset", "theta", "surrogate",
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
        given["v_init"] if learn_k or given["chain_length"] > 1 else None,
        given["k"],
        given["layout"],
        vth,
        sigma if given["take_stats"] else None,
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
