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
from .curriculum import lambert_w0, superloss, superloss_sigma, tet_loss

__all__ = [
    "adaptive_lif_multi_step",
    "adaptive_lif_step",
    "lambert_w0",
    "lif_charge",
    "membrane_stats",
    "neuron_reset",
    "surrogate_derivative",
    "superloss",
    "superloss_sigma",
    "surrogate_spike",
    "tet_loss",
]
