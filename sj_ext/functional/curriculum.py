r"""Curriculum (confidence-aware) losses as pure torch functions.

* :func:`lambert_w0` -- the principal branch of the Lambert W function, on the tensor's device.
* :func:`superloss_sigma`, :func:`superloss` -- the SuperLoss form used by CL-SNN
  (Tang et al., arXiv 2309.04737; Castells et al., NeurIPS 2020).

For per-sample base losses :math:`\ell_i`, a threshold :math:`\tau` and :math:`\lambda > 0`:

.. math::

    \sigma_i^* &= \exp\!\Big(-W_0\big(\tfrac12 \max(-\tfrac{2}{e},
        \tfrac{\ell_i - \tau}{\lambda})\big)\Big) \quad\text{(detached)}, \\
    L_i &= (\ell_i - \tau)\,\sigma_i^* + \lambda (\log \sigma_i^*)^2 .

The readings of the sources (thresholds, clamp, base losses): ``docs/methods.md``, CL-SNN.
"""

import math

import torch
from torch import Tensor

__all__ = ["lambert_w0", "superloss_sigma", "superloss"]

# 1/e as a float64 plus the remainder, so that x + 1/e is exact near the branch point.
_INV_E = math.exp(-1.0)
_INV_E_LO = -1.2428753672788363e-17
# Below this x the iteration runs in v = 1 + W (well conditioned at the branch point).
_BRANCH_X = -0.25
_HALLEY_STEPS = 3


def _w0_near_branch(near: Tensor, d: Tensor) -> Tensor:
    """W0 where ``near``: Halley on v = 1 + W solving v e^v - expm1(v) = q, q = 1 + e x
    (``d`` = x + 1/e, formed without cancellation), from the branch-point series."""
    q = torch.where(near, math.e * d, 0.0).clamp(min=0.0)
    p = (2.0 * q).sqrt()
    v = p * (1.0 + p * (-1.0 / 3.0 + p * (11.0 / 72.0)))
    for _ in range(_HALLEY_STEPS):
        ev = v.exp()
        r = v * ev - torch.expm1(v) - q
        v = v - 2.0 * r * v / (2.0 * v * v * ev - r * (1.0 + v))
    return torch.where(q > 0, v - 1.0, -1.0)


def _w0_elsewhere(x: Tensor, near: Tensor) -> Tensor:
    """W0 away from the branch point: Halley on f(w) = w + log(w / x) (w and x share their
    sign), from Winitzki's guess; 1 stands in where ``near``, at 0 and at infinity."""
    xs = torch.where(near | (x == 0) | (x == math.inf), 1.0, x)
    lx = torch.log1p(xs)
    w = lx * (1.0 - torch.log1p(lx) / (2.0 + lx))
    for _ in range(_HALLEY_STEPS):
        f = w + torch.log(w / xs)
        w = w - 2.0 * f * w * (1.0 + w) / (2.0 * (1.0 + w) ** 2 + f)
    return w


def lambert_w0(x: Tensor) -> Tensor:
    r"""Principal branch :math:`W_0` of the Lambert W function, elementwise.

    :math:`w = W_0(x)` is the solution of

    .. math::

        w e^{w} = x, \qquad w \ge -1, \qquad x \in [-1/e, \infty).

    Computed in torch on ``x``'s device with a fixed number of Halley steps (no host
    synchronisation), from a branch-point series guess
    :math:`w \approx -1 + p - p^2/3 + 11p^3/72`, :math:`p = \sqrt{2(1 + e x)}`, for
    :math:`x < -1/4`, and from Winitzki's guess
    :math:`\ln(1+x)\,(1 - \ln(1 + \ln(1+x)) / (2 + \ln(1+x)))` elsewhere. Near the branch
    point the iteration solves :math:`v e^v - (e^v - 1) = 1 + e x` for :math:`v = 1 + w`
    with :math:`1 + e x` formed without cancellation; elsewhere it solves
    :math:`w + \ln(w / x) = 0`, which cannot overflow for large ``x``. The result is
    accurate to a few units in the last place of the working precision.

    :param x: any shape. float64 and float32 are computed in their own precision;
        float16 and bfloat16 in float32 and cast back; other dtypes are promoted to the
        default float dtype.
    :return: ``W0(x)``, same shape, device and (floating) dtype as ``x``.
        ``W0(-1/e) = -1`` (inputs below ``-1/e`` by at most the machine epsilon of ``x``'s
        dtype, the rounding of ``-1/e`` itself, count as ``-1/e``); ``W0(0) = 0``;
        ``W0(inf) = inf``; ``NaN`` below the domain and for ``NaN``. The result carries no
        gradient.
    """
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    out_dtype = x.dtype
    tol = torch.finfo(out_dtype).eps  # how far below -1/e still counts as -1/e
    x = x.detach()
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    inv_e = torch.tensor(_INV_E, dtype=x.dtype).item()  # 1/e rounded to x's precision
    d = (x + inv_e) + ((_INV_E - inv_e) + _INV_E_LO)  # x + 1/e; x + inv_e is exact near -1/e
    near = x < _BRANCH_X
    w = torch.where(near, _w0_near_branch(near, d), _w0_elsewhere(x, near))
    w = torch.where((x == 0) | (x == math.inf), x, w)
    w = torch.where(d < -tol, math.nan, w)
    return w.to(out_dtype)


def superloss_sigma(loss: Tensor, tau: Tensor | float, lam: float = 1.0) -> Tensor:
    r"""Closed-form SuperLoss confidence :math:`\sigma^*` of each sample (detached).

    .. math::

        \beta_i = \frac{\ell_i - \tau}{\lambda}, \qquad
        \sigma_i^* = \exp\!\Big(-W_0\big(\tfrac12 \max(-\tfrac{2}{e}, \beta_i)\big)\Big)
        = \arg\min_{\sigma > 0}\; (\ell_i - \tau)\,\sigma + \lambda (\log \sigma)^2 .

    :math:`\sigma^* \in (0, e]`: easy samples (:math:`\ell_i < \tau`) get
    :math:`\sigma^* > 1`, hard ones :math:`\sigma^* < 1`, and :math:`\sigma^* = e` once
    :math:`\beta_i \le -2/e` (below that the objective has no minimiser; SuperLoss clamps).

    :param loss: per-sample base losses :math:`\ell`, any shape (usually ``[N]``).
    :param tau: threshold :math:`\tau`, a number or a tensor broadcastable to ``loss``.
    :param lam: regulariser :math:`\lambda > 0`.
    :return: :math:`\sigma^*`, shape of ``loss`` broadcast with ``tau``, dtype of
        ``loss`` (float16/bfloat16 computed in float32), no gradient.
    """
    if not lam > 0:
        raise ValueError(f"lam must be > 0, got {lam}")
    with torch.no_grad():
        work = loss.float() if loss.dtype in (torch.float16, torch.bfloat16) else loss
        beta = (work - tau) / lam
        return torch.exp(-lambert_w0(0.5 * beta.clamp(min=-2.0 / math.e))).to(loss.dtype)


def superloss(loss: Tensor, tau: Tensor | float, lam: float = 1.0) -> tuple[Tensor, Tensor]:
    r"""Per-sample SuperLoss at the optimal confidence :math:`\sigma^*`.

    .. math::

        L_i = (\ell_i - \tau)\,\sigma_i^* + \lambda (\log \sigma_i^*)^2,

    with :math:`\sigma^*` from :func:`superloss_sigma`, a constant for autograd, so
    :math:`\partial L_i / \partial\theta = \sigma_i^*\, \partial \ell_i / \partial\theta`.
    ``tau`` enters as given (pass it detached if it is computed from the batch).

    :param loss: per-sample base losses :math:`\ell`, any shape (usually ``[N]``).
    :param tau: threshold :math:`\tau`, a number or a tensor broadcastable to ``loss``.
    :param lam: regulariser :math:`\lambda > 0`.
    :return: ``(L, sigma)``: :math:`L`, shape of ``loss`` (broadcast with ``tau``;
        ``.mean()`` is the paper's loss), and the detached :math:`\sigma^*`.
    """
    sigma = superloss_sigma(loss, tau, lam)
    return (loss - tau) * sigma + lam * sigma.log().square(), sigma
