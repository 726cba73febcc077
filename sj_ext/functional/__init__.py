"""The equations of every sj_ext method as pure torch functions (the reference path).

The LIF options travel in one :class:`LIFParameters`; :func:`lif_step` and
:func:`lif_multi_step` are the one step and the time loop of both neurons.
"""

from .adaptive_lif import (
    fire_and_reset,
    lif_charge,
    membrane_stats,
    needs_stats,
    neuron_reset,
    surrogate_derivative,
    surrogate_spike,
)
from .curriculum import lambert_w0, superloss, superloss_sigma
from .grouping import (
    chain_length,
    grouped_charge,
    merge_groups,
    partition,
    split_groups,
    unpartition,
)
from .lif import lif_multi_step, lif_step, run_steps
from .params import LIFParameters
from .tet import tet_loss

__all__ = [
    "LIFParameters",
    "chain_length",
    "fire_and_reset",
    "grouped_charge",
    "lambert_w0",
    "lif_charge",
    "lif_multi_step",
    "lif_step",
    "membrane_stats",
    "merge_groups",
    "needs_stats",
    "neuron_reset",
    "partition",
    "run_steps",
    "split_groups",
    "superloss",
    "superloss_sigma",
    "surrogate_derivative",
    "surrogate_spike",
    "tet_loss",
    "unpartition",
]
