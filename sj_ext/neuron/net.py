"""Switches over a whole network's sj_ext neurons, as SpikingJelly's ``functional.set_*`` are."""

import torch.nn as nn

from ..options import BACKENDS, check_choice
from .base import RunningThresholdLIFBase

__all__ = ["set_backend", "sync_threshold_stats"]


def sync_threshold_stats(net: nn.Module, group=None) -> int:
    r"""Take every sj_ext neuron's membrane statistics over all processes of ``group``.

    Sets ``stats_group`` on each :class:`RunningThresholdLIFBase` in ``net``
    (``group=None``: the default group), so the adaptive thresholds
    :math:`f_c(\mu_t + \sigma_t)` and the dynamic surrogate widths follow the
    whole distributed batch, as ``SyncBatchNorm`` does for BatchNorm. Needs an
    initialised ``torch.distributed``. Returns the number of neurons switched.
    """
    import torch.distributed as dist

    if not dist.is_initialized():
        raise RuntimeError("sync_threshold_stats needs an initialised torch.distributed")
    nodes = [m for m in net.modules() if isinstance(m, RunningThresholdLIFBase)]
    for node in nodes:
        node.stats_group = dist.group.WORLD if group is None else group
    return len(nodes)


def set_backend(net: nn.Module, backend: str) -> int:
    """Set ``backend`` (``'torch'``, ``'cupy'`` or ``'cpu'``) on every sj_ext neuron in ``net``.

    The sj_ext counterpart of SpikingJelly's ``functional.set_step_mode``:
    every :class:`RunningThresholdLIFBase` (``AdaptiveThresholdLIF``,
    ``DilatedWindowLIF``) in ``net`` switches; other modules are left alone.
    ``'cupy'`` runs their multi-step forward and backward in the fused CUDA
    kernels of :mod:`sj_ext.fused_lif`, ``'cpu'`` in the same kernels built for
    the CPU. Switching needs neither CuPy nor a GPU
    (a model can be built on one machine and trained on another); a ``'cupy'``
    forward raises a ``RuntimeError`` naming the CuPy wheel to install
    (``pip install cupy-cuda13x``) when CuPy is missing, and one naming
    the device when its input is not on a CUDA device.

    :return: the number of neurons switched
    :raises ValueError: for an unknown backend
    """
    check_choice("backend", backend, BACKENDS)
    nodes = [m for m in net.modules() if isinstance(m, RunningThresholdLIFBase)]
    for node in nodes:
        node.backend = backend
    return len(nodes)
