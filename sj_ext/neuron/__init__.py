"""Spiking neurons: SpikingJelly 2.0 nodes (``step_mode``, ``reset_net``, ``[T, N, *]``).

Registered in :data:`sj_ext.registry.NEURONS`: ``adaptive_lif``
(:class:`AdaptiveThresholdLIF`) and ``dilated_window_lif`` (:class:`DilatedWindowLIF`)
where they are defined, SpikingJelly's ``lif`` (``LIFNode``) and ``plif``
(``ParametricLIFNode``) here.
"""

from spikingjelly.activation_based import neuron

from ..registry import NEURONS
from .adaptive import AdaptiveThresholdLIF
from .base import RunningThresholdLIFBase
from .dilated_window import DilatedWindowLIF
from .net import set_backend, sync_threshold_stats

__all__ = [
    "AdaptiveThresholdLIF",
    "DilatedWindowLIF",
    "RunningThresholdLIFBase",
    "set_backend",
    "sync_threshold_stats",
]

NEURONS.register("lif", neuron.LIFNode)
NEURONS.register("plif", neuron.ParametricLIFNode)
