"""Spiking neurons: SpikingJelly 2.0 nodes (``step_mode``, ``reset_net``, ``[T, N, *]``)."""

from .adaptive import AdaptiveThresholdLIF
from .base import RunningThresholdLIFBase, set_backend, sync_threshold_stats
from .dilated_window import DilatedWindowLIF

__all__ = [
    "AdaptiveThresholdLIF",
    "DilatedWindowLIF",
    "RunningThresholdLIFBase",
    "set_backend",
    "sync_threshold_stats",
]
