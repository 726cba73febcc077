r"""``LIFParameters``: the options of an sj_ext LIF layer, one object from neuron to kernel.

The neuron builds it (:meth:`sj_ext.neuron.RunningThresholdLIFBase.lif_parameters`),
the torch functions of :mod:`sj_ext.functional` read it, and the fused kernels'
plan (:mod:`sj_ext.fused_lif`) carries it, so an option is added in one place.
The time constant is not in it: ``k = 1/tau`` is a tensor with a gradient when
tau is learnable, and is passed beside it.

The fields, by the equation they enter (``docs/methods.md``, Notation):

* charge :math:`h_t` -- ``decay_input``, ``v_reset`` (the resting potential of
  the leak; 0 for a soft reset);
* fire and reset -- ``surrogate_function`` (:math:`\Theta` forward, its
  derivative backward), ``v_reset`` (hard reset to it, or ``None``: soft reset
  by subtracting :math:`V_{th}(t)`), ``detach_reset``;
* DS-ATGO's adaptive threshold :math:`V_{th}(t) = f_c(\mu_t + \sigma_t)` --
  ``f_c``, ``stats`` (``'layer'``: over the step's whole tensor;
  ``'channel'``: per channel of ``[N, C, *]``), ``stats_group`` (a
  ``torch.distributed`` group the statistics are summed over, or ``None``);
* multi-receptive-field grouping -- ``dims`` (grouped dims of the per-step
  ``[N, *]``, non-negative and checked; ``()``: ungrouped), ``groups`` (the
  grid), ``window`` (``'block'`` / ``'dilated'``), ``projection`` (``'sine'``,
  ``'add'``, ``'none'`` or a callable ``(rec, own) -> tensor``) and ``theta``.

The choices of ``stats``, ``window`` and ``projection`` and their defaults are
those of :mod:`sj_ext.options`; the neurons' arguments take their defaults
from these fields (their ``__init__`` signatures).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..options import DEFAULT_STATS, DEFAULT_WINDOW, Projection, Stats, Window

__all__ = ["LIFParameters"]


@dataclass(frozen=True)
class LIFParameters:
    """The options of an sj_ext LIF layer (see the module docstring); ``k`` goes beside it."""

    decay_input: bool = True
    v_reset: float | None = 0.0
    surrogate_function: object = None  # needed to fire (not to charge)
    detach_reset: bool = False
    f_c: float = 1.0
    stats: Stats = DEFAULT_STATS
    stats_group: object = None
    dims: tuple[int, ...] = ()
    groups: tuple[int, ...] = ()
    window: Window = DEFAULT_WINDOW
    projection: Projection | Callable = "none"  # no chain of groups: a plain LIF
    theta: float = math.pi / 4
