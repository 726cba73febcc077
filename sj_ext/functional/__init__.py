"""The equations of every sj_ext method as pure torch functions (the reference path)."""

from .adaptive_lif import (
    adaptive_lif_multi_step,
    adaptive_lif_step,
    fire_and_reset,
    lif_charge,
    membrane_stats,
    neuron_reset,
    run_steps,
    surrogate_derivative,
    surrogate_spike,
)
from .backend import set_backend
from .curriculum import lambert_w0, superloss, superloss_sigma
from .grouping import (
    grouped_charge,
    grouped_lif_multi_step,
    grouped_lif_step,
    merge_groups,
    partition,
    split_groups,
    unpartition,
)
from .tet import tet_loss

__all__ = [
    "adaptive_lif_multi_step",
    "adaptive_lif_step",
    "fire_and_reset",
    "grouped_charge",
    "grouped_lif_multi_step",
    "grouped_lif_step",
    "lambert_w0",
    "lif_charge",
    "membrane_stats",
    "merge_groups",
    "neuron_reset",
    "partition",
    "run_steps",
    "set_backend",
    "split_groups",
    "superloss",
    "superloss_sigma",
    "surrogate_derivative",
    "surrogate_spike",
    "tet_loss",
    "unpartition",
]
