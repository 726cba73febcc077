r"""The full TET loss (Deng et al., ICLR 2022) as a pure torch function.

For an output sequence :math:`O \in \mathbb{R}^{T \times N \times C}` (``[T, N, C]``),
class indices :math:`y \in \{0, \dots, C-1\}^N` (``[N]``), a weight
:math:`\lambda \in [0, 1]` and a target value :math:`\phi`, the per-sample loss
(``[N]``) is

.. math::

    L^{TET}_i = (1 - \lambda)\,\frac{1}{T} \sum_{t=1}^{T} \mathrm{CE}(O_{t,i}, y_i)
        + \lambda\, \frac{1}{T C} \sum_{t, c} (O_{t,i,c} - \phi)^2 :

cross-entropy at every time step instead of on the time-mean output, plus a
regulariser pulling every output towards :math:`\phi`. Its mean over samples is the
paper's loss; at :math:`\lambda = 0` it equals SpikingJelly's
``temporal_efficient_training_cross_entropy``. The reading of the source:
``docs/methods.md``, TET.
"""

import torch.nn.functional as F
from torch import Tensor

__all__ = ["tet_loss"]


def tet_loss(x_seq: Tensor, target: Tensor, lam: float = 1e-3, phi: float = 1.0) -> Tensor:
    r"""Per-sample TET loss (Deng et al., ICLR 2022) of an output sequence.

    .. math::

        L_i = (1 - \lambda)\,\frac{1}{T} \sum_{t=1}^{T} \mathrm{CE}(O_{t,i}, y_i)
              + \lambda\, \frac{1}{T C} \sum_{t, c} (O_{t,i,c} - \phi)^2 .

    ``.mean()`` over samples is the paper's loss (its MSE term averages over every element
    of :math:`O`). At ``lam = 0`` the mean equals SpikingJelly's
    ``temporal_efficient_training_cross_entropy``. Predict with the mean over :math:`t`.

    :param x_seq: output sequence :math:`O`, shape ``[T, N, C]``.
    :param target: class indices, shape ``[N]``.
    :param lam: weight :math:`\lambda` of the MSE regulariser (paper: ``1e-3``).
    :param phi: target value :math:`\phi` of the regulariser (paper: ``1.0``).
    :return: per-sample losses, shape ``[N]``.
    """
    if x_seq.dim() != 3:
        raise ValueError(f"tet_loss expects x_seq of shape [T, N, C], got {tuple(x_seq.shape)}")
    T, N, _ = x_seq.shape
    ce = F.cross_entropy(x_seq.flatten(0, 1), target.repeat(T), reduction="none")
    mse = (x_seq - phi).square().mean(dim=(0, 2))
    return (1.0 - lam) * ce.view(T, N).mean(0) + lam * mse
