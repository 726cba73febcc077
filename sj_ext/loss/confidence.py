"""CL-SNN's confidence-aware (curriculum) loss: SuperLoss over a per-sample base loss."""

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..functional.curriculum import superloss
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

__all__ = ["ConfidenceAwareLoss"]

_TAU_MODES = ("fixed", "batch", "ema")


def _check_base_options(base, label_smoothing: float | None, logit_scale: float) -> None:
    """The options that only some bases of :class:`ConfidenceAwareLoss` take, refused for the
    others (a callable base included)."""
    if logit_scale != 1.0 and base not in ("ce", "label_smoothing_ce"):
        raise ValueError(
            f"logit_scale applies only to base='ce' or 'label_smoothing_ce', got base={base!r}"
        )
    if label_smoothing is not None and base != "label_smoothing_ce":
        raise ValueError(
            f"label_smoothing applies only to base='label_smoothing_ce', got base={base!r}"
        )


def _named_base(name: str, label_smoothing: float | None, logit_scale: float) -> Callable:
    """The per-sample base loss ``name`` of :class:`ConfidenceAwareLoss`."""
    bases = {
        "ce": partial(ce, logit_scale=logit_scale),
        "label_smoothing_ce": partial(
            ce,
            label_smoothing=0.1 if label_smoothing is None else label_smoothing,
            logit_scale=logit_scale,
        ),
        "mse_rate": mse_rate,
        "tet": tet_loss,
    }
    if name not in bases:
        raise ValueError(f"base must be one of {tuple(bases)} or a callable, got {name!r}")
    return bases[name]


def _check_tau(tau, base) -> None:
    """``tau``: one of the modes, or a finite number; ``'fixed'`` (log C) needs a CE base."""
    if isinstance(tau, str):
        if tau not in _TAU_MODES:
            raise ValueError(f"tau must be one of {_TAU_MODES} or a number, got {tau!r}")
        if tau == "fixed" and base == "mse_rate":
            raise ValueError(
                "tau='fixed' is log(C), a cross-entropy level that "
                "base='mse_rate' never reaches; use 'batch', 'ema' or a number"
            )
    elif isinstance(tau, bool) or not isinstance(tau, int | float) or not math.isfinite(tau):
        raise ValueError(f"tau must be one of {_TAU_MODES} or a finite number, got {tau!r}")


class ConfidenceAwareLoss(nn.Module):
    r"""Confidence-aware curriculum loss of CL-SNN (Tang et al., arXiv 2309.04737).

    The SuperLoss form (Castells et al., NeurIPS 2020) on top of a per-sample base loss
    :math:`\ell_i`:

    .. math::

        \sigma_i^* = \exp\!\Big(-W_0\big(\tfrac12
            \max(-\tfrac{2}{e}, \tfrac{\ell_i - \tau}{\lambda})\big)\Big), \qquad
        L_i = (\ell_i - \tau)\,\sigma_i^* + \lambda (\log \sigma_i^*)^2 .

    :math:`\sigma^*` is detached (the gradient of :math:`L_i` is
    :math:`\sigma_i^*\,\partial\ell_i`): samples easier than :math:`\tau` weigh more than
    1 (at most :math:`e`), harder ones less. See
    :func:`sj_ext.functional.curriculum.superloss_sigma`.

    :param base: the per-sample base loss :math:`\ell`:

        * ``'ce'`` -- cross-entropy of the output averaged over time (default);
        * ``'label_smoothing_ce'`` -- the same with ``label_smoothing`` (default 0.1);
        * ``'mse_rate'`` -- mean over classes of (firing rate - one-hot)^2, the PLIF
          paper's loss (the output layer's spikes are the input);
        * ``'tet'`` -- :func:`~sj_ext.functional.tet.tet_loss` with
          ``lam=1e-3, phi=1.0`` (other values: pass ``TETLoss(..., reduction='none')``);
        * a callable ``(input, target) -> [N]`` per-sample losses; it receives ``input``
          and ``target`` exactly as given to :meth:`forward` (so ``target`` may be
          anything the callable accepts).
    :param tau: the threshold :math:`\tau`:

        * ``'fixed'`` -- :math:`\log C`, the cross-entropy of a uniform guess (not allowed
          with ``'mse_rate'``, whose losses never reach it);
        * ``'batch'`` -- the batch mean of :math:`\ell` (detached);
        * ``'ema'`` -- :math:`\tau \leftarrow (1 - m)\tau + m\,\overline{\ell}` in
          training mode, started at the first batch mean; the updated value is the
          batch's threshold. Kept in the buffers ``tau_ema`` and ``tau_ema_initialised``
          (saved by ``state_dict``). Evaluation mode does not update it, and uses the
          batch mean while it is uninitialised;

        Under DDP (``torch.distributed`` initialised), the batch mean of ``'batch'`` and
        ``'ema'`` in training mode is over the global batch -- every process's samples,
        one all-reduce per call, like ``SyncBatchNorm`` -- so every process holds the same
        threshold and ``tau_ema``; all processes must then call the loss alike.
        * a number -- a constant threshold.
    :param lam: :math:`\lambda > 0` (1.0; 0.25 is common for 100 classes).
    :param reduction: ``'mean'`` | ``'sum'`` | ``'none'`` (per-sample ``[N]``).
    :param time_dim: 0 for ``[T, N, C]`` input, 1 for ``[N, T, C]``; ``[N, C]`` is one step.
    :param label_smoothing: smoothing of ``'label_smoothing_ce'`` (only that base).
    :param momentum: :math:`m` of the ``'ema'`` threshold (only that mode).
    :param logit_scale: :math:`s` of the cross-entropy bases: :math:`\ell_i =
        \mathrm{CE}(\frac{s}{T}\sum_t O_{t,i}, y_i)`. Keep 1 for real-valued outputs (a
        ``Linear`` head). Set it (e.g. 10) for firing-rate outputs in [0, 1], such as the
        PLIF nets' voting layer: at ``s = 1`` every softmax stays near uniform, every
        :math:`\ell_i` lies in about [1.46, 2.46] around :math:`\tau = \log 10`, and easy
        samples (weight up to :math:`e`) keep pushing down the outputs of a class whose own
        samples are hard (weight < 1) until the class dies -- measured on MNIST: digit 8
        never learned (docs/methods.md, The firing-rate trap (MNIST)).

    Shapes: ``input`` ``[T, N, C]``, ``[N, T, C]`` or ``[N, C]``; ``target`` ``[N]``
    class indices; output a scalar, or ``[N]`` for ``reduction='none'``.

    After each call, ``last_loss`` (per-sample base losses ``[N]``), ``last_sigma``
    (:math:`\sigma^*`, ``[N]``) and ``last_tau`` (scalar tensor) hold the batch's values,
    detached, for analysis.

    Example::

        criterion = ConfidenceAwareLoss(tau="ema", lam=1.0)
        out = net(x_seq)                      # [T, N, C]
        loss = criterion(out, y)
        loss.backward()
        criterion.last_sigma                  # per-sample confidence of this batch
    """

    #: :math:`L_i < 0` for a sample easier than :math:`\tau` (:math:`\sigma_i^* > 1`): the
    #: batch loss can be negative, and it rises towards 0 as the samples become easy
    can_be_negative = True

    def __init__(
        self,
        base: str | Callable[[Tensor, Tensor], Tensor] = "ce",
        tau: str | float = "fixed",
        lam: float = 1.0,
        reduction: str = "mean",
        time_dim: int = 0,
        label_smoothing: float | None = None,
        momentum: float = 0.1,
        logit_scale: float = 1.0,
    ):
        super().__init__()
        logit_scale = check_logit_scale(logit_scale)
        _check_base_options(base, label_smoothing, logit_scale)
        if isinstance(base, str):
            self._named_base = _named_base(base, label_smoothing, logit_scale)
        elif not callable(base):
            raise TypeError(f"base must be a name or a callable, got {type(base).__name__}")
        _check_tau(tau, base)
        if not lam > 0:
            raise ValueError(f"lam must be > 0, got {lam}")
        if not 0 < momentum <= 1:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        check_reduction(reduction)
        check_time_dim(time_dim)
        self.base = base
        self.tau = tau
        self.lam = lam
        self.reduction = reduction
        self.time_dim = time_dim
        self.momentum = momentum
        self.logit_scale = logit_scale
        if tau == "ema":
            self.register_buffer("tau_ema", torch.zeros(()))
            self.register_buffer("tau_ema_initialised", torch.zeros((), dtype=torch.bool))
        self.last_loss: Tensor | None = None
        self.last_sigma: Tensor | None = None
        self.last_tau: Tensor | None = None

    def _batch_mean(self, loss: Tensor) -> Tensor:
        """Mean of the detached per-sample losses; in training mode under an initialised
        ``torch.distributed``, the mean over every process's batch (one all-reduce)."""
        loss = loss.detach()
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return loss.mean()
        sum_count = torch.stack([loss.sum(), loss.new_tensor(loss.numel())]).double()
        dist.all_reduce(sum_count)
        return (sum_count[0] / sum_count[1]).to(loss.dtype)

    def _threshold(self, loss: Tensor, C: int) -> Tensor:
        if self.tau == "fixed":
            return loss.new_tensor(math.log(C))
        if self.tau == "batch":
            return self._batch_mean(loss)
        if self.tau == "ema":
            mean = self._batch_mean(loss)
            if self.training:
                m = mean.to(self.tau_ema.dtype)
                updated = (1 - self.momentum) * self.tau_ema + self.momentum * m
                self.tau_ema.copy_(torch.where(self.tau_ema_initialised, updated, m))
                self.tau_ema_initialised.fill_(True)
            return torch.where(self.tau_ema_initialised, self.tau_ema.to(loss.dtype), mean)
        return loss.new_tensor(float(self.tau))

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        x_seq = time_first(input, self.time_dim)
        C = check_classes(x_seq)
        N = x_seq.shape[1]
        if isinstance(self.base, str):
            check_target(x_seq, target)
            loss = self._named_base(x_seq, target)
        else:
            loss = self.base(input, target)
            if loss.shape != (N,):
                raise ValueError(
                    f"base loss must return per-sample losses of shape [N] = "
                    f"[{N}], got {list(loss.shape)}"
                )
        bad = int((~torch.isfinite(loss)).sum())
        if bad:
            raise ValueError(f"base loss is NaN or infinite for {bad} of {N} samples")
        tau = self._threshold(loss, C)
        value, sigma = superloss(loss, tau, self.lam)
        self.last_loss, self.last_sigma, self.last_tau = loss.detach(), sigma, tau
        return reduce(value, self.reduction)

    def extra_repr(self) -> str:
        base = (
            self.base
            if isinstance(self.base, str)
            else getattr(self.base, "__name__", type(self.base).__name__)
        )
        return (
            f"base={base!r}, tau={self.tau!r}, lam={self.lam}, "
            f"reduction={self.reduction!r}, time_dim={self.time_dim}"
            + (f", logit_scale={self.logit_scale}" if self.logit_scale != 1.0 else "")
        )
