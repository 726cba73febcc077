"""``set_backend``: switch every sj_ext neuron of a network to a backend at once."""

import torch.nn as nn

__all__ = ["set_backend"]


def set_backend(net: nn.Module, backend: str) -> int:
    """Set ``backend`` (``'torch'`` or ``'cupy'``) on every sj_ext neuron in ``net``.

    The sj_ext counterpart of SpikingJelly's ``functional.set_step_mode``:
    every :class:`~sj_ext.neuron.RunningThresholdLIFBase` (``AdaptiveThresholdLIF``,
    ``DilatedWindowLIF``) in ``net`` switches; other modules are left alone.
    ``'cupy'`` runs their multi-step forward and backward in the fused CUDA
    kernels of :mod:`sj_ext.cupy`. Switching needs neither CuPy nor a GPU
    (a model can be built on one machine and trained on another); a ``'cupy'``
    forward raises a ``RuntimeError`` naming the install extra
    (``pip install sj-ext[cupy-cuda13]``) when CuPy is missing, and one naming
    the device when its input is not on a CUDA device.

    :return: the number of neurons switched
    :raises ValueError: for an unknown backend
    """
    from ..neuron.base import BACKENDS, RunningThresholdLIFBase  # the neurons import functional

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    nodes = [m for m in net.modules() if isinstance(m, RunningThresholdLIFBase)]
    for node in nodes:
        node.backend = backend
    return len(nodes)
