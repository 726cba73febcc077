r"""What the fused kernels cover, and the surrogates in the form they take.

Options outside it run the torch backend (the neurons, after a one-time
warning from :func:`warn_fallback`) or raise (:func:`sj_ext.fused_lif.lif_multi_step`).
"""

import warnings
from dataclasses import dataclass

import torch
from spikingjelly.activation_based import surrogate as sj_surrogate

from ..functional import LIFParameters, chain_length, needs_stats
from ..surrogate import DynamicATan, DynamicRect, DynamicSigmoid
from .source import DTYPES

__all__ = ["SurrogateSpec", "surrogate_spec", "unsupported_reason", "warn_fallback"]


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


def unsupported_reason(x_seq: torch.Tensor, thresholds, params: LIFParameters) -> str | None:
    """Why the fused kernels do not cover these options (then the torch backend runs), or None.

    Not covered: dtypes other than float32 / float64 / float16 / bfloat16; a
    surrogate without a kernel form (:func:`surrogate_spec`); a callable
    projection; per-channel statistics or thresholds (``stats='channel'``) and
    statistics synced across processes (``stats_group``) whenever statistics
    are taken.
    """
    if x_seq.dtype not in DTYPES:
        return f"inputs of dtype {x_seq.dtype}"
    if surrogate_spec(params.surrogate_function) is None:
        return (
            f"the surrogate {params.surrogate_function!r} (kernels: sj_ext's DynamicRect / "
            "DynamicATan / DynamicSigmoid, SpikingJelly's Rect / ATan / Sigmoid, with spiking=True)"
        )
    if callable(params.projection) and chain_length(params) > 1:
        return "a callable projection (kernels: 'sine', 'add', 'none')"
    stats = needs_stats(thresholds, params.surrogate_function)
    per_step = isinstance(thresholds, torch.Tensor) and thresholds.numel() != x_seq.shape[0]
    if params.stats == "channel" and (stats or per_step):
        return "per-channel statistics (stats='channel')"
    if params.stats_group is not None and stats:
        return "statistics synced across processes (stats_group)"
    return None


_warned: set[str] = set()


def warn_fallback(who: str, reason: str):
    """Warn once per process and message that ``who`` runs on the torch backend, and why.

    :param who: the neuron, e.g. ``"AdaptiveThresholdLIF(backend='cpu')"``
    :param reason: a clause, e.g. ``"the fused kernels do not cover ..."``
    """
    message = f"{who}: {reason}; it runs the torch backend"
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
