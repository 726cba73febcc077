"""Spiking neurons: SpikingJelly 2.0 nodes (``step_mode``, ``reset_net``, ``[T, N, *]``)."""

from .adaptive import AdaptiveThresholdLIF

__all__ = ["AdaptiveThresholdLIF"]
