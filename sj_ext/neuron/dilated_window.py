r"""``DilatedWindowLIF``: multi-receptive-field grouping (Yao et al.) as a SpikingJelly 2.0 node."""

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

from spikingjelly.activation_based import surrogate

from ..functional import LIFParameters, chain_length
from ..functional.grouping import check_grid, fitting_grid, resolve_projection
from ..options import (
    DEFAULT_BACKEND,
    WINDOWS,
    Backend,
    Projection,
    Stats,
    StepMode,
    Threshold,
    Window,
    check_choice,
)
from ..surrogate import DynamicRect
from .base import RunningThresholdLIFBase

__all__ = ["DilatedWindowLIF"]


def _divides(step_shape, dims, groups) -> bool:
    """Whether ``dims`` (non-empty) of ``step_shape`` are multiples of their grid entries."""
    return bool(dims) and all(step_shape[d] % g == 0 for d, g in zip(dims, groups, strict=True))


def _as_tuple(value, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,)
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a sequence of ints, got {value!r}") from None


class DilatedWindowLIF(RunningThresholdLIFBase):
    r"""LIF layer whose positions are updated group after group, each fed by the one before.

    Multi-receptive-field grouping with a projection (Yao, Wu, Chen, Zhang,
    ACML 2023, arXiv 2401.10843; ``docs/methods.md``, Grouping). The positions along the
    grouped ``dims`` are split by the grid ``groups`` into :math:`G` groups of
    equal shape (row-major order of the grid index), as contiguous windows
    (``window='block'``) or as strided ones (``window='dilated'``: group
    :math:`(a, b)` holds the positions :math:`(i, j)` with
    :math:`i \bmod g_h = a,\ j \bmod g_w = b`, so every group spans the whole
    map). At every step :math:`t`, for :math:`g = 1 \dots G`:

    .. math::
        m^1_t &= u^1_{t-1}, \qquad m^g_t = \Omega(h^{g-1}_t,\; u^g_{t-1}) \quad (g > 1) \\
        h^g_t &= \mathrm{LIFcharge}(m^g_t, x^g_t) \\
        s_t &= \Theta(h_t - V_{th}), \qquad u_t = \mathrm{reset}(h_t, s_t)

    where :math:`h^{g-1}_t` is the *charged* membrane (before fire and reset) of
    the group before, local position :math:`i` of one group meets local position
    :math:`i` of the next, and

    .. math::
        \Omega_{sine}(r, o) = 2 \sin(\theta\, r \cos(\theta\, o)), \quad
        \Omega_{add}(r, o) = r + o, \quad
        \Omega_{none}(r, o) = o .

    Gradients flow through :math:`\Omega`. Within one step the groups interact,
    so the layer is recurrent even at ``T = 1``. With ``projection='none'`` it
    equals SpikingJelly's ``LIFNode`` (``ParametricLIFNode`` with
    ``learnable_tau=True``). The reading of the source (recurrence from the
    previous group's charged membrane, own state from step :math:`t-1`) is the
    one of ``docs/methods.md``, Grouping, following the public code's data flow.

    **Adaptive threshold** (``threshold='adaptive'``; ``docs/methods.md``,
    DS-ATGO): since every group is charged before any fires, the statistics of the
    whole :math:`h_t` are well defined, and in training
    :math:`V_{th}(t) = f_c(\mathrm{mean}(h_t) + \mathrm{std}(h_t))` (detached;
    per channel with ``stats='channel'``), with the running threshold of
    :class:`~sj_ext.neuron.AdaptiveThresholdLIF` (buffer ``running_threshold``,
    momentum :math:`m`) used in evaluation mode.

    **Shapes**: input ``[N, *]`` (``'s'``) or ``[T, N, *]`` (``'m'``). ``dims``
    index the per-step tensor ``[N, *]``; dim 0 (batch) is never grouped. With
    ``dims=None`` (default) a feature map ``[N, C, H, W]`` (or any per-step
    rank >= 4) is grouped over its last two dims, and a per-step ``[N, F]`` or
    ``[N]`` (after ``Flatten``/``Linear``: no map to group) runs ungrouped, as a
    plain (or adaptive) LIF, so the node drops into SpikingJelly models through
    ``spiking_neuron=``; a per-step rank of 3 (``[N, L, D]`` or ``[N, C, L]``)
    is ambiguous and needs explicit ``dims``. For sequences ``[T, N, L, D]``,
    ``dims=(-2,), groups=(g,)`` groups the tokens: the recurrent variant of the
    paper. A grouped dim that does not divide by its grid entry, or ``dims``
    that do not fit the input's rank, raise ``ValueError`` naming the shape, the
    grid and one that fits. An unchained layer (``projection='none'``, or one
    group) is ``LIFNode`` whatever its grid: with ``dims=None`` it takes every
    input ``LIFNode`` takes, grouped (for the monitors' per-group rates) only
    where the default grid fits.

    The arguments (``tau`` by
    position or keyword, the others by keyword):

    :param tau: membrane time constant (> 1); the initial one if learnable
    :param decay_input: whether the input is scaled by ``1/tau``
    :param learnable_tau: PLIF: ``1/tau = sigmoid(w)`` with ``w`` learnable
    :param v_threshold: the threshold (``threshold='fixed'``); the initial running
        threshold (``'adaptive'``)
    :param v_reset: hard-reset value, or ``None`` for a soft reset by the threshold
    :param groups: grid, one entry per grouped dim (an int: the same for every dim);
        default ``(2, 2)``
    :param window: ``'dilated'`` (strided groups) or ``'block'`` (contiguous windows)
    :param dims: the grouped dims of ``[N, *]``, or ``None`` (see Shapes)
    :param projection: ``'sine'``, ``'add'``, ``'none'`` or a callable
        ``(rec, own) -> tensor`` of the group's shape
    :param theta: the radian factor :math:`\theta` of ``'sine'``
    :param threshold: ``'fixed'`` (``v_threshold``) or ``'adaptive'`` (DS-ATGO)
    :param f_c: adaptive-threshold scale :math:`f_c`
    :param momentum: running-threshold update rate :math:`m` in ``[0, 1]``
    :param stats: ``'layer'`` or ``'channel'`` (dim 1 of ``[N, C, *]``) statistics
    :param surrogate_function: a SpikingJelly surrogate; dynamic ones receive
        :math:`\sigma_t`. Default: ``surrogate.Sigmoid()`` (as ``LIFNode``) with a
        fixed threshold, :class:`~sj_ext.surrogate.DynamicRect` with an adaptive one
    :param detach_reset: detach the spike in the reset
    :param step_mode: ``'s'`` or ``'m'``
    :param backend: ``'torch'``; ``'cupy'`` (CUDA tensors) or ``'cpu'`` (CPU tensors): in
        step mode ``'m'`` the time loop runs in sj_ext's fused kernels
        (:mod:`sj_ext.fused_lif`; every window and named projection; a callable
        projection runs the torch backend, with a one-time warning)
    :param store_v_seq: keep the membrane of every step in ``v_seq`` (``'m'``)

    After a forward, ``threshold_seq`` holds the threshold of every step since
    the last reset (``[T]`` or ``[T, C]``), and ``sigma_seq`` / ``width_seq``
    the :math:`\sigma_t` and surrogate widths when they were taken (adaptive
    threshold or dynamic surrogate; else ``None``).
    """

    def __init__(
        self,
        tau: float = 2.0,
        *,
        decay_input: bool = LIFParameters.decay_input,
        learnable_tau: bool = False,
        v_threshold: float = 1.0,
        v_reset: float | None = LIFParameters.v_reset,
        threshold: Threshold = "fixed",
        f_c: float = LIFParameters.f_c,
        momentum: float = 0.1,
        stats: Stats = LIFParameters.stats,
        surrogate_function: Callable | None = None,
        detach_reset: bool = LIFParameters.detach_reset,
        step_mode: StepMode = "s",
        backend: Backend = DEFAULT_BACKEND,
        store_v_seq: bool = False,
        groups: int | Sequence[int] = (2, 2),
        window: Window = LIFParameters.window,
        dims: int | Sequence[int] | None = None,
        projection: Projection | Callable = "sine",
        theta: float = LIFParameters.theta,
    ):
        check_choice("window", window, WINDOWS)
        resolve_projection(projection)  # raises on an unknown name
        if not (isinstance(theta, int | float) and math.isfinite(theta)):
            raise ValueError(f"theta must be a finite number, got {theta!r}")
        dims = None if dims is None else _as_tuple(dims, "dims")
        n_dims = 2 if dims is None else len(dims)
        groups = (groups,) * n_dims if isinstance(groups, int) else _as_tuple(groups, "groups")
        if len(groups) != n_dims or any(g < 1 for g in groups):
            raise ValueError(
                f"groups={groups} must hold one integer >= 1 per grouped dim "
                f"(dims={dims}: {n_dims} dims)"
            )
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
        self.groups = groups
        self.window = window
        self.dims = dims
        self.projection = projection
        self.theta = float(theta)

    @staticmethod
    def default_surrogate(threshold: Threshold) -> Callable:
        """SpikingJelly's ``Sigmoid`` with a fixed threshold, ``DynamicRect`` with DS-ATGO's."""
        return DynamicRect() if threshold == "adaptive" else surrogate.Sigmoid()

    def _shown(self, name: str) -> str:
        if name == "projection":
            return getattr(self.projection, "__name__", None) or repr(self.projection)
        if name == "theta":
            return f"{self.theta:.4g}"
        return super()._shown(name)

    # ---------------------------------------------------------------- forward
    def grid_for(self, step_shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The checked ``(dims, groups)`` used for a per-step input of ``step_shape``.

        ``((), ())`` means ungrouped: ``dims=None`` and a per-step ``[N, F]`` or
        ``[N]``, or an unchained layer (``projection='none'`` or one group, whose
        grid changes nothing of the maths, as ``LIFNode``) whose input the
        default grid does not fit.
        """
        step_shape = tuple(step_shape)
        who = f"{type(self).__name__}(step_mode={self.step_mode!r})"
        dims, rank = self.dims, len(step_shape)
        if dims is None:
            dims = (rank - 2, rank - 1) if rank >= 4 else ()
            chain = chain_length(LIFParameters(groups=self.groups, projection=self.projection))
            if rank <= 2 or (chain == 1 and not _divides(step_shape, dims, self.groups)):
                return (), ()
            if rank == 3:
                raise ValueError(
                    f"{who}: an input of shape {step_shape} per step is ambiguous with dims=None "
                    f"(groups={self.groups}): pass the grouped dims, e.g. "
                    f"{fitting_grid(step_shape, (-2,), self.groups)} for a sequence [N, L, D] "
                    f"or {fitting_grid(step_shape, (-1,), self.groups)} for a map [N, C, L]"
                )
        return check_grid(step_shape, dims, self.groups, who), self.groups

    def lif_parameters(self, step_shape) -> LIFParameters:
        """The node's options with the grid of :meth:`grid_for` and the projection."""
        dims, groups = self.grid_for(step_shape)
        return replace(
            super().lif_parameters(step_shape),
            dims=dims,
            groups=groups,
            window=self.window,
            projection=self.projection,
            theta=self.theta,
        )
