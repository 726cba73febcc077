"""Losses of the time-step outputs with PyTorch's ``reduction``: TET, time-mean CE, rate MSE."""

from torch import Tensor, nn

from ..functional.tet import tet_loss
from .common import (
    ce,
    check_classes,
    check_logit_scale,
    check_reduction,
    check_target,
    check_time_dim,
    mse_rate,
    reduce,
    time_first,
)

__all__ = ["TETLoss", "TimeMeanCrossEntropy", "FiringRateMSE"]


class _TimeLoss(nn.Module):
    """A per-sample loss of SNN outputs with PyTorch's ``reduction`` and a ``time_dim``.

    Subclasses define :meth:`per_sample` on ``[T, N, C]`` outputs and ``[N]`` targets.
    """

    def __init__(self, reduction: str, time_dim: int):
        super().__init__()
        check_reduction(reduction)
        check_time_dim(time_dim)
        self.reduction = reduction
        self.time_dim = time_dim

    def per_sample(self, x_seq: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        x_seq = time_first(input, self.time_dim)
        check_classes(x_seq)
        check_target(x_seq, target)
        return reduce(self.per_sample(x_seq, target), self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, time_dim={self.time_dim}"


class TETLoss(_TimeLoss):
    r"""Full TET loss (Deng et al., ICLR 2022) with the MSE regulariser.

    .. math::

        L = (1 - \lambda)\,\frac{1}{T} \sum_t \mathrm{CE}(O_t, y) + \lambda\,
            \mathrm{MSE}(O, \phi)

    SpikingJelly ships only the cross-entropy part
    (``spikingjelly.activation_based.functional.temporal_efficient_training_cross_entropy``);
    this module equals it at ``lam = 0``. See
    :func:`sj_ext.functional.tet.tet_loss` (the per-sample form). Predict with the
    output averaged over time.

    :param lam: :math:`\lambda \in [0, 1]` (paper: ``1e-3``).
    :param phi: :math:`\phi` (paper: ``1.0``).
    :param reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (per-sample ``[N]``).
    :param time_dim: 0 for ``[T, N, C]`` input, 1 for ``[N, T, C]``; ``[N, C]`` is one step.

    Shapes: ``input`` ``[T, N, C]``, ``[N, T, C]`` or ``[N, C]``; ``target`` ``[N]`` class
    indices; output a scalar, or ``[N]`` for ``reduction='none'`` (usable as the ``base`` of
    :class:`ConfidenceAwareLoss`).
    """

    def __init__(
        self, lam: float = 1e-3, phi: float = 1.0, reduction: str = "mean", time_dim: int = 0
    ):
        super().__init__(reduction, time_dim)
        if not 0 <= lam <= 1:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        self.lam = lam
        self.phi = phi

    def per_sample(self, x_seq: Tensor, target: Tensor) -> Tensor:
        return tet_loss(x_seq, target, self.lam, self.phi)

    def extra_repr(self) -> str:
        return f"lam={self.lam}, phi={self.phi}, {super().extra_repr()}"


class TimeMeanCrossEntropy(_TimeLoss):
    r"""Cross-entropy of the output averaged over time, :math:`\mathrm{CE}(\frac1T \sum_t O_t, y)`.

    The usual SNN classification loss (DS-ATGO trains with it and
    ``label_smoothing=0.1``).

    :param label_smoothing: as :func:`torch.nn.functional.cross_entropy`.
    :param logit_scale: :math:`s`, the loss is :math:`\mathrm{CE}(\frac{s}{T} \sum_t O_t, y)`;
        1 for real-valued outputs, larger for firing-rate outputs in [0, 1] (see
        :class:`ConfidenceAwareLoss`).
    :param reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (per-sample ``[N]``).
    :param time_dim: 0 for ``[T, N, C]`` input, 1 for ``[N, T, C]``; ``[N, C]`` is one step.
    """

    def __init__(
        self,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        time_dim: int = 0,
        logit_scale: float = 1.0,
    ):
        super().__init__(reduction, time_dim)
        if not 0 <= label_smoothing <= 1:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self.logit_scale = check_logit_scale(logit_scale)

    def per_sample(self, x_seq: Tensor, target: Tensor) -> Tensor:
        return ce(x_seq, target, self.label_smoothing, self.logit_scale)

    def extra_repr(self) -> str:
        return (
            f"label_smoothing={self.label_smoothing}, logit_scale={self.logit_scale}, "
            f"{super().extra_repr()}"
        )


class FiringRateMSE(_TimeLoss):
    r"""The PLIF paper's loss (Fang et al., ICCV 2021): MSE of firing rates and one-hot labels.

    .. math::

        L_i = \frac{1}{C} \sum_c \Big(\frac1T \sum_t O_{t,i,c} - [y_i = c]\Big)^2

    ``O`` is the output layer's spikes (or the voting layer's rates), so the rates lie
    in [0, 1]; predict with the output averaged over time. ``reduction='mean'`` equals
    ``F.mse_loss(O.mean(0), one_hot(y))``.

    :param reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (per-sample ``[N]``).
    :param time_dim: 0 for ``[T, N, C]`` input, 1 for ``[N, T, C]``; ``[N, C]`` is one step.
    """

    def __init__(self, reduction: str = "mean", time_dim: int = 0):
        super().__init__(reduction, time_dim)

    def per_sample(self, x_seq: Tensor, target: Tensor) -> Tensor:
        return mse_rate(x_seq, target)
