"""BatchNorm statistics that match the final weights (``train.precise_bn``).

A BatchNorm's running statistics are an exponential average over the training
steps, taken while the weights moved: after the last step they can lag the
weights the model is tested with (a run can lose tens of points to that alone).
:func:`recompute_batch_norm` replaces them by the cumulative average over a fixed
set of training batches, the model in train mode and no gradient taken
(Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021, the "precise BN"):

.. math::

    \\hat\\mu = \\frac{1}{N}\\sum_{b=1}^{N} \\mu_b, \\qquad
    \\hat\\sigma^2 = \\frac{1}{N}\\sum_{b=1}^{N} \\sigma^2_b

with :math:`\\mu_b`, :math:`\\sigma^2_b` batch ``b``'s mean and unbiased variance
of each channel, as BatchNorm's forward computes them (PyTorch's ``momentum=None``).
Every other buffer (an adaptive neuron's running thresholds, say) is left as it was.
"""

from collections.abc import Callable, Iterable

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["batch_norms", "recompute_batch_norm"]


def batch_norms(model: nn.Module) -> list[_BatchNorm]:
    """Every BatchNorm of ``model`` that keeps running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_batch_norm(
    model: nn.Module, batches: Iterable, forward: Callable[[object], None], limit: int
) -> int:
    """Re-estimate every BatchNorm's running statistics over ``limit`` of ``batches``.

    ``forward(batch)`` runs the model on one batch (and resets its neurons). The model
    is put in train mode for the pass and back in the mode it was in; buffers other
    than the BatchNorms' statistics are restored. Returns the batches used (0 when the
    model has no BatchNorm, which is then left untouched).
    """
    norms = batch_norms(model)
    if not norms:
        return 0
    # other buffers by owner and name: a forward may replace one (a running threshold grows)
    saved = [
        (module, name, buf.clone())
        for module in model.modules()
        if not isinstance(module, _BatchNorm)
        for name, buf in module._buffers.items()
        if buf is not None
    ]
    momenta = [m.momentum for m in norms]
    training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: batch b weighs 1 / b
    model.train()
    used = 0
    try:
        for batch in batches:
            if used >= limit:
                break
            forward(batch)
            used += 1
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        for module, name, value in saved:
            module._buffers[name] = value
        model.train(training)
    return used
