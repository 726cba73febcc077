r"""Multi-receptive-field grouping with a projection (Yao et al., ACML 2023).

See ``docs/methods.md``, Grouping (the readings of the source, the paper).

The positions of a neuron layer are split along the grouped dims
(``dims``, e.g. ``H, W`` of ``[N, C, H, W]``, or ``L`` of a sequence
``[N, L, D]``) by a grid ``groups = (g_1, ..., g_k)`` into
:math:`G = \prod_i g_i` groups of equal shape, numbered in row-major order of
the grid index :math:`(a_1, \dots, a_k)`. Along a grouped dim of size
:math:`S` (grid :math:`g`, :math:`S = g\,s`) group index :math:`a` takes

.. math::
    \text{block:}\quad   & \{\, a\,s + i \;:\; 0 \le i < s \,\}
        \quad\text{(a contiguous window)} \\
    \text{dilated:}\quad & \{\, i\,g + a \;:\; 0 \le i < s \,\}
        \quad\text{(positions with } p \bmod g = a\text{; spans the whole dim)}

and local position :math:`i` of every group lines up with local position
:math:`i` of every other group. Inside one time step the groups are charged one
after another; group :math:`g` starts from its own membrane merged with the
*charged* membrane of group :math:`g-1` by a projection :math:`\Omega`:

.. math::
    m^1_t &= u^1_{t-1}, \qquad m^g_t = \Omega(h^{g-1}_t,\; u^g_{t-1}) \quad (g > 1) \\
    h^g_t &= \mathrm{LIFcharge}(m^g_t, x^g_t) \\
    s_t &= \Theta(h_t - V_{th}), \qquad u_t = \mathrm{reset}(h_t, s_t)

with

.. math::
    \Omega_{sine}(r, o) = 2 \sin(\theta\, r \cos(\theta\, o)), \quad
    \Omega_{add}(r, o) = r + o, \quad
    \Omega_{none}(r, o) = o

(:math:`\theta = \pi/4` by default). Since the recurrence reads the charged
membrane :math:`h^{g-1}_t` (before fire and reset), all groups are charged
first and the whole :math:`h_t` is fired at once; layer statistics of
:math:`h_t` (DS-ATGO's adaptive threshold, :mod:`sj_ext.functional.adaptive_lif`)
are therefore well defined. With :math:`\Omega_{none}` the groups are
independent and the layer is a plain LIF.

Shapes: ``dims`` index the per-step tensor ``[N, *]`` (negative ones count from
its end); dim 0 (batch) is never grouped.
"""

import math
from collections.abc import Callable, Sequence
from functools import partial
from itertools import product

import torch

from ..options import PROJECTIONS, WINDOWS, Window, check_choice
from .adaptive_lif import lif_charge
from .params import LIFParameters

__all__ = [
    "check_grid",
    "fitting_grid",
    "group_views",
    "split_groups",
    "merge_groups",
    "partition",
    "unpartition",
    "sine_projection",
    "add_projection",
    "resolve_projection",
    "chain_length",
    "grouped_charge",
]


# ------------------------------------------------------------------------------------ the grid
def _divisor_near(size: int, g: int) -> int:
    """The largest divisor of ``size`` up to ``g``; the smallest above 1 when that is 1."""
    if size <= 1:
        return 1
    below = max(d for d in range(1, min(g, size) + 1) if size % d == 0)
    if below > 1:
        return below
    return min(d for d in range(2, size + 1) if size % d == 0)


def fitting_grid(shape: Sequence[int], dims: Sequence[int], groups: Sequence[int]) -> str:
    """``'dims=..., groups=...'``: a grid near the given one that fits a per-step ``shape``.

    For error messages. The grouped dims are ``dims`` where they are valid for
    ``shape`` (``[N, *]``), else its last two (the last one of ``[N, F]``; the
    batch is never grouped); each grid entry is the divisor of its dim nearest
    below the wanted one (:func:`_divisor_near`). ``'dims=None'`` when there is
    nothing to group (``[N]``).
    """
    shape, rank = tuple(shape), len(shape)
    chosen = [d + rank if d < 0 else d for d in dims]
    if not chosen or any(not 1 <= p < rank for p in chosen) or chosen != sorted(set(chosen)):
        chosen = list(range(max(1, rank - 2), rank))
    if not chosen:
        return "dims=None"
    wanted = [groups[i] if i < len(groups) else 2 for i in range(len(chosen))]
    fit = tuple(_divisor_near(shape[p], g) for p, g in zip(chosen, wanted, strict=True))
    return f"dims={tuple(p - rank for p in chosen)}, groups={fit}"


def check_grid(
    shape: Sequence[int], dims: Sequence[int], groups: Sequence[int], who: str = "grouping"
) -> tuple[int, ...]:
    """Normalise ``dims`` for a per-step tensor of ``shape`` (``[N, *]``) and check the grid.

    :return: the grouped dims as non-negative, increasing indices
    :raises ValueError: naming the shape, the grid and one that fits
        (:func:`fitting_grid`) when a dim is out of range, is the batch dim 0,
        repeats, or does not divide by its grid entry
    """
    shape, dims, groups = tuple(shape), tuple(dims), tuple(groups)
    grid = f"dims={dims}, groups={groups}"
    if len(dims) != len(groups):
        raise ValueError(f"{who}: {grid}: one grid entry per grouped dim is needed")
    if any(not isinstance(g, int) or g < 1 for g in groups):
        raise ValueError(f"{who}: {grid}: grid entries must be integers >= 1")
    rank = len(shape)

    def fits() -> str:
        return f"e.g. {fitting_grid(shape, dims, groups)} fits this input"

    norm = []
    for d in dims:
        p = d + rank if d < 0 else d
        if not 1 <= p < rank:
            raise ValueError(
                f"{who}: {grid} does not fit an input of shape {shape} per step: grouped dims must "
                f"be dims 1..{rank - 1} of [N, *] (dim 0, the batch, is never grouped); {fits()}"
            )
        norm.append(p)
    if any(b <= a for a, b in zip(norm, norm[1:], strict=False)):
        raise ValueError(
            f"{who}: {grid} for an input of shape {shape} per step: the grouped dims must be "
            f"distinct and in increasing order (got {tuple(norm)}); {fits()}"
        )
    bad = [(p, shape[p], g) for p, g in zip(norm, groups, strict=True) if shape[p] % g]
    if bad:
        detail = ", ".join(f"dim {p} of size {s} by {g}" for p, s, g in bad)
        raise ValueError(
            f"{who}: an input of shape {shape} per step does not divide by the grid {grid} "
            f"({detail}); the grouped dims must be multiples of their grid entries: {fits()}"
        )
    return tuple(norm)


def _grid_view(x: torch.Tensor, dims, groups, window: Window):
    """``x`` with every grouped dim split in two, and the positions of the grid axes."""
    check_choice("window", window, WINDOWS)
    spec = dict(zip(dims, groups, strict=True))
    shape, axes = [], []
    for d, size in enumerate(x.shape):
        if d not in spec:
            shape.append(size)
            continue
        g = spec[d]
        if window == "block":  # position a*s + i: grid axis first
            axes.append(len(shape))
            shape += [g, size // g]
        else:  # position i*g + a: grid axis second
            axes.append(len(shape) + 1)
            shape += [size // g, g]
    return x.view(shape), axes


def group_views(x: torch.Tensor, dims, groups, window: str) -> list[torch.Tensor]:
    """The ``G`` groups of ``x`` as strided views (no copy), in row-major grid order.

    ``dims`` are non-negative indices of ``x`` (see :func:`check_grid`); every
    view has the shape of ``x`` with grouped dim ``d`` divided by its grid entry.
    """
    xv, axes = _grid_view(x, dims, groups, window)
    views = []
    for index in product(*(range(g) for g in groups)):
        key = [slice(None)] * xv.dim()
        for axis, a in zip(axes, index, strict=True):
            key[axis] = a
        views.append(xv[tuple(key)])
    return views


def _merged_shape(part_shape, dims, groups):
    shape = list(part_shape)
    for d, g in zip(dims, groups, strict=True):
        shape[d] *= g
    return shape


class _SplitGroups(torch.autograd.Function):
    """Groups as views; backward writes the group gradients back in place (one copy)."""

    @staticmethod
    def forward(ctx, x, dims, groups, window):
        ctx.spec = (dims, groups, window)
        return tuple(group_views(x, dims, groups, window))

    @staticmethod
    def backward(ctx, *grads):
        dims, groups, window = ctx.spec
        ref = next(g for g in grads if g is not None)
        grads = [torch.zeros_like(ref) if g is None else g for g in grads]
        return merge_groups(grads, dims, groups, window), None, None, None


class _MergeGroups(torch.autograd.Function):
    """Groups written into one tensor (one copy); backward hands back views of the gradient."""

    @staticmethod
    def forward(ctx, dims, groups, window, *parts):
        ctx.spec = (dims, groups, window)
        out = parts[0].new_empty(_merged_shape(parts[0].shape, dims, groups))
        for view, part in zip(group_views(out, dims, groups, window), parts, strict=True):
            view.copy_(part)
        return out

    @staticmethod
    def backward(ctx, grad):
        dims, groups, window = ctx.spec
        return None, None, None, *split_groups(grad, dims, groups, window)


def split_groups(x: torch.Tensor, dims, groups, window: str) -> tuple[torch.Tensor, ...]:
    """:func:`group_views` for autograd: the backward merges the gradients in one copy."""
    dims, groups = tuple(dims), tuple(groups)
    if not dims:
        return (x,)
    return _SplitGroups.apply(x, dims, groups, window)


def merge_groups(parts: Sequence[torch.Tensor], dims, groups, window: str) -> torch.Tensor:
    """Inverse of :func:`split_groups`: every group scattered back to its positions."""
    dims, groups = tuple(dims), tuple(groups)
    if not dims:
        (x,) = parts
        return x
    if len(parts) != math.prod(groups):
        raise ValueError(f"groups={groups} needs {math.prod(groups)} parts, got {len(parts)}")
    return _MergeGroups.apply(dims, groups, window, *parts)


def partition(x: torch.Tensor, dims, groups, window: str) -> torch.Tensor:
    """The groups of ``x`` stacked: ``[G, *group_shape]`` (row-major grid order)."""
    return torch.stack(split_groups(x, dims, groups, window))


def unpartition(x_groups: torch.Tensor, dims, groups, window: str) -> torch.Tensor:
    """Inverse of :func:`partition`: ``[G, *group_shape]`` back to the layer's layout."""
    return merge_groups(x_groups.unbind(0), dims, groups, window)


# ---------------------------------------------------------------------------------- projections
def sine_projection(rec: torch.Tensor, own: torch.Tensor, theta: float = LIFParameters.theta):
    r""":math:`\Omega_{sine}(r, o) = 2 \sin(\theta\, r \cos(\theta\, o))`."""
    return 2.0 * torch.sin(theta * rec * torch.cos(theta * own))


def add_projection(rec: torch.Tensor, own: torch.Tensor):
    r""":math:`\Omega_{add}(r, o) = r + o`."""
    return rec + own


def resolve_projection(projection, theta: float = LIFParameters.theta) -> Callable | None:
    r"""``'sine'`` / ``'add'`` / ``'none'`` / a callable ``(rec, own) -> tensor`` to a callable.

    ``'none'`` (:math:`\Omega_{none}(r, o) = o`) gives ``None``: the groups are
    independent and charged in one op.
    """
    if callable(projection):
        return projection
    if projection == "sine":
        return partial(sine_projection, theta=theta)
    if projection == "add":
        return add_projection
    if projection == "none":
        return None
    raise ValueError(
        f"projection must be one of {PROJECTIONS} or a callable (rec, own) -> tensor, "
        f"got {projection!r}"
    )


# ------------------------------------------------------------------------------------ dynamics
def chain_length(params: LIFParameters) -> int:
    """How many groups are charged one after another: ``G``, or 1 when they are independent.

    Independent: ``projection='none'``, or a single group (``dims=()`` included);
    the charge is then the plain LIF charge of the whole layer.
    """
    count = math.prod(params.groups)
    return 1 if params.projection == "none" or count == 1 else count


def grouped_charge(x: torch.Tensor, v: torch.Tensor, k, params: LIFParameters):
    r"""Charge every group in order: :math:`h^g_t` from :math:`\Omega(h^{g-1}_t, u^g_{t-1})`.

    :param x: input current ``[N, *]``
    :param v: membrane after the previous reset ``[N, *]``
    :param k: ``1/tau`` (float, or a 0-d tensor for a learnable tau)
    :param params: the grid (``dims`` non-negative and checked, :func:`check_grid`;
        ``()``: one group), ``window``, ``projection``, ``theta``, ``decay_input``
        and ``v_reset`` are read
    :return: the charged membrane :math:`h_t` ``[N, *]`` in the layer's layout
    """
    project = resolve_projection(params.projection, params.theta)
    if chain_length(params) == 1:
        return lif_charge(x, v, k, params.decay_input, params.v_reset)
    charged = []
    for x_g, own in zip(
        split_groups(x, params.dims, params.groups, params.window),
        split_groups(v, params.dims, params.groups, params.window),
        strict=True,
    ):
        if charged:
            m = project(charged[-1], own)
            if m.shape != own.shape:
                raise ValueError(
                    f"projection {params.projection!r} returned shape {tuple(m.shape)} "
                    f"for groups of shape {tuple(own.shape)}"
                )
        else:
            m = own
        charged.append(lif_charge(x_g, m, k, params.decay_input, params.v_reset))
    return merge_groups(charged, params.dims, params.groups, params.window)
