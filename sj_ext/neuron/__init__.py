"""Spiking neurons: SpikingJelly 2.0 nodes (``step_mode``, ``reset_net``, ``[T, N, *]``).

The recipes name them (``adaptive_lif``, ``dilated_window_lif``; SpikingJelly's
``lif`` and ``plif``) through the application's registries (:mod:`sj_ext.app.components`).
"""

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
