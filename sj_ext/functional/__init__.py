"""The equations of every sj_ext method as pure torch functions (the reference path)."""

from .adaptive_lif import (
    adaptive_lif_multi_step,
    adaptive_lif_step,
    lif_charge,
    membrane_stats,
    neuron_reset,
    surrogate_derivative,
    surrogate_spike,
)

__all__ = [
    "adaptive_lif_multi_step",
    "adaptive_lif_step",
    "lif_charge",
    "membrane_stats",
    "neuron_reset",
    "surrogate_derivative",
    "surrogate_spike",
]
