r"""What every loss here shares: SNN outputs as ``[T, N, C]``, target checks, reductions,
and the per-sample base losses

.. math::
    \mathrm{CE}_i = -\log \mathrm{softmax}(s\,\bar O_i)_{y_i}, \qquad
    \mathrm{MSE}_i = \tfrac1C \lVert \bar O_i - \mathrm{onehot}(y_i) \rVert^2,

with :math:`\bar O_i = \frac1T \sum_t O_{t,i}` the time-mean output and :math:`s` the
logit scale.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "time_first",
    "check_classes",
    "check_target",
    "check_reduction",
    "check_time_dim",
    "reduce",
    "ce",
    "check_logit_scale",
    "mse_rate",
    "REDUCTIONS",
]

REDUCTIONS = ("mean", "sum", "none")


def time_first(input: Tensor, time_dim: int) -> Tensor:
    """``input`` as ``[T, N, C]``; ``[N, C]`` becomes ``[1, N, C]``."""
    if input.dim() == 2:
        return input.unsqueeze(0)
    if input.dim() == 3:
        return input if time_dim == 0 else input.transpose(0, 1)
    layout = "[T, N, C]" if time_dim == 0 else "[N, T, C]"
    raise ValueError(
        f"input must have shape [N, C] or {layout} (time_dim={time_dim}), got {tuple(input.shape)}"
    )


def check_classes(x_seq: Tensor) -> int:
    C = x_seq.shape[-1]
    if C < 2:
        raise ValueError(
            f"need at least 2 classes, got C = {C} (input [T, N, C] = {list(x_seq.shape)})"
        )
    return C


def check_target(x_seq: Tensor, target: Tensor) -> None:
    _, N, C = x_seq.shape
    if target.shape != (N,):
        raise ValueError(
            f"target must have shape [N] = [{N}] to match input [T, N, C] = "
            f"{list(x_seq.shape)}, got {list(target.shape)}"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    bad = int(((target < 0) | (target >= C)).sum())
    if bad:
        raise ValueError(f"{bad} of {N} targets are outside the class range [0, {C - 1}]")


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_time_dim(time_dim: int) -> None:
    if time_dim not in (0, 1):
        raise ValueError(f"time_dim must be 0 ([T, N, C]) or 1 ([N, T, C]), got {time_dim!r}")


def reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def ce(
    x_seq: Tensor, target: Tensor, label_smoothing: float = 0.0, logit_scale: float = 1.0
) -> Tensor:
    logits = x_seq.mean(0) * logit_scale
    return F.cross_entropy(logits, target, reduction="none", label_smoothing=label_smoothing)


def check_logit_scale(logit_scale) -> float:
    if isinstance(logit_scale, bool) or not isinstance(logit_scale, int | float):
        raise TypeError(f"logit_scale must be a number, got {type(logit_scale).__name__}")
    if not (math.isfinite(logit_scale) and logit_scale > 0):
        raise ValueError(f"logit_scale must be a finite number > 0, got {logit_scale}")
    return float(logit_scale)


def mse_rate(x_seq: Tensor, target: Tensor) -> Tensor:
    one_hot = F.one_hot(target, x_seq.shape[-1]).to(x_seq.dtype)
    return (x_seq.mean(0) - one_hot).square().mean(1)
