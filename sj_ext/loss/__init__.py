"""Loss modules: the CL-SNN confidence-aware (curriculum) loss and the full TET loss.

Both follow PyTorch loss conventions (``forward(input, target)``, ``reduction``) and take
SNN outputs ``[T, N, C]`` (``time_dim=0``, SpikingJelly's multi-step layout), ``[N, T, C]``
(``time_dim=1``) or plain ``[N, C]`` (one time step). The equations and the readings of
the papers: ``docs/methods.md``, CL-SNN and ``docs/methods.md``, TET.
"""

from .confidence import ConfidenceAwareLoss
from .temporal import FiringRateMSE, TETLoss, TimeMeanCrossEntropy

__all__ = ["ConfidenceAwareLoss", "TETLoss", "TimeMeanCrossEntropy", "FiringRateMSE"]
