r"""Optimizers and learning-rate schedules, registered in :data:`sj_ext.app.registry.OPTIMIZERS`
and :data:`sj_ext.app.registry.SCHEDULES`.

An optimizer builder is called as ``builder(params, lr=optim.lr,
weight_decay=optim.weight_decay, **optim.args)``; a schedule builder as
``builder(epochs=train.epochs, warmup_epochs=schedule.warmup_epochs,
**schedule.args)`` and returns the factor :math:`f(e)` that multiplies
``optim.lr`` at the training progress :math:`e` in epochs, a real number
(0 at the start; the engine sets the rate before every optimizer step, at
:math:`e = \text{epoch} + \text{batch} / \text{batches}`, so a one-epoch run
decays as a long one does, and a resume on another number of processes keeps
the schedule's shape).
"""

import math
from collections.abc import Callable

import torch

from .registry import OPTIMIZERS, SCHEDULES

__all__ = ["sgd", "adam", "adamw", "cosine", "constant"]


@OPTIMIZERS.register("sgd")
def sgd(params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9, nesterov=False):
    return torch.optim.SGD(
        params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov
    )


@OPTIMIZERS.register("adam")
def adam(params, lr: float, weight_decay: float = 0.0, betas=(0.9, 0.999)):
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas))


@OPTIMIZERS.register("adamw")
def adamw(params, lr: float, weight_decay: float = 0.01, betas=(0.9, 0.999)):
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=tuple(betas))


def _warmup(epoch: float, warmup_epochs: int) -> float:
    return (epoch + 1) / (warmup_epochs + 1)


@SCHEDULES.register("cosine")
def cosine(
    epochs: int, warmup_epochs: int = 0, min_lr_ratio: float = 0.0
) -> Callable[[float], float]:
    r"""Linear warm-up :math:`(e + 1) / (w + 1)` for :math:`e < w`, then
    :math:`r + (1 - r) \frac12 (1 + \cos(\pi (e - w) / (E - w)))`, from 1 at
    :math:`e = w` down to ``min_lr_ratio`` :math:`r` at :math:`e = E`."""

    def factor(epoch: float) -> float:
        if epoch < warmup_epochs:
            return _warmup(epoch, warmup_epochs)
        progress = (epoch - warmup_epochs) / max(1, epochs - warmup_epochs)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@SCHEDULES.register("constant")
def constant(epochs: int, warmup_epochs: int = 0) -> Callable[[float], float]:
    """The optimizer's learning rate, after an optional linear warm-up."""

    def factor(epoch: float) -> float:
        return _warmup(epoch, warmup_epochs) if epoch < warmup_epochs else 1.0

    return factor
