r"""Optimizers and learning-rate schedules, registered in :data:`sj_ext.registry.OPTIMIZERS`
and :data:`sj_ext.registry.SCHEDULES`.

An optimizer builder is called as ``builder(params, lr=optim.lr,
weight_decay=optim.weight_decay, **optim.args)``; a schedule builder as
``builder(optimizer, epochs=train.epochs, warmup_epochs=schedule.warmup_epochs,
**schedule.args)`` and returns a per-epoch ``LambdaLR`` whose factor
:math:`f(e)` multiplies ``optim.lr`` in epoch :math:`e` (0-based).
"""

import math

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


@SCHEDULES.register("cosine")
def cosine(optimizer, epochs: int, warmup_epochs: int = 0, min_lr_ratio: float = 0.0):
    r"""Per-epoch factor: linear warm-up :math:`(e + 1) / (w + 1)` for :math:`e < w`, then
    :math:`r + (1 - r) \frac12 (1 + \cos(\pi (e - w) / (E - w)))` down to ``min_lr_ratio``."""

    def factor(epoch: int) -> float:
        if epoch < warmup_epochs:
            return (epoch + 1) / (warmup_epochs + 1)
        progress = (epoch - warmup_epochs) / max(1, epochs - warmup_epochs)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@SCHEDULES.register("constant")
def constant(optimizer, epochs: int, warmup_epochs: int = 0):
    """The optimizer's learning rate, after an optional linear warm-up."""

    def factor(epoch: int) -> float:
        return (epoch + 1) / (warmup_epochs + 1) if epoch < warmup_epochs else 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
