r"""What the monitors record, as functions of tensors and neurons (no hooks, no files).

Every number is written as a Python float rounded to 6 significant digits
(:func:`floats`); per-step series are ``[T]`` (:func:`per_step`).
"""

import torch
import torch.nn as nn

from ...neuron.base import RunningThresholdLIFBase

__all__ = ["floats", "per_step", "is_grouped", "Recorder", "threshold_entry", "curriculum_record"]


def _round(x):
    return [_round(v) for v in x] if isinstance(x, list) else float(f"{x:.6g}")


def floats(t: torch.Tensor) -> list:
    """A tensor as (nested) lists of Python floats rounded to 6 significant digits."""
    return _round(t.detach().double().tolist())


def per_step(t: torch.Tensor, steps: int | None = None) -> torch.Tensor:
    """``[T]`` from ``[T]`` or ``[T, C, ...]`` (mean over the rest); ``[:steps]`` if given."""
    t = t.detach().float()
    t = t.reshape(t.shape[0], -1).mean(1) if t.dim() > 1 else t.reshape(-1)
    return t if steps is None else t[:steps]


def is_grouped(module: nn.Module) -> bool:
    return all(hasattr(module, a) for a in ("grid_for", "groups", "window"))


class Recorder(nn.Module):
    r"""A surrogate that records its input ``z = h - V_th`` and fires :math:`\Theta(z)`."""

    def __init__(self):
        super().__init__()
        self.z: list[torch.Tensor] = []

    def forward(self, z):
        self.z.append(z.detach())
        return (z >= 0).to(z.dtype)


def threshold_entry(module: nn.Module, steps: int) -> dict | None:
    r"""``threshold``'s record of one layer that ran ``steps`` steps, or None.

    sj_ext neurons: ``train`` :math:`V_{th}(t)`, ``running`` :math:`\bar V_{th}[t]`
    (adaptive ones), ``sigma`` :math:`\sigma_t` and ``width`` :math:`a_t` when they
    have them, each ``[T]`` (channels averaged); other neurons: the fixed
    ``v_threshold`` at every step.
    """
    if isinstance(module, RunningThresholdLIFBase):
        if module.threshold_seq is None:
            return None
        entry = {"train": floats(per_step(module.threshold_seq))}
        if module.adaptive and module.running_threshold.numel():
            entry["running"] = floats(per_step(module.running_threshold, steps))
        for key, seq in (("sigma", module.sigma_seq), ("width", module.width_seq)):
            if isinstance(seq, torch.Tensor):
                entry[key] = floats(per_step(seq))
        return entry
    if isinstance(module.v_threshold, int | float):
        return {"train": [float(module.v_threshold)] * steps}
    return None


def curriculum_record(loss: torch.Tensor, sigma: torch.Tensor, tau: torch.Tensor) -> dict:
    r"""``curriculum``'s record from the per-sample :math:`\ell_i` and :math:`\sigma^*_i`
    (``[N]``) and the threshold :math:`\tau`.

    Easy samples are :math:`\ell_i < \tau`; ``weight_easy`` is
    :math:`\sum_{easy}\sigma^*_i / \sum_i \sigma^*_i` (None when the total is 0).
    """
    loss, sigma, tau = loss.detach().float(), sigma.detach().float(), tau.detach().float()
    easy = loss < tau
    total = sigma.sum()
    return {
        "tau": float(tau),
        "loss": floats(loss),
        "sigma": floats(sigma),
        "easy": int(easy.sum()),
        "hard": int((~easy).sum()),
        "mean_sigma_easy": float(sigma[easy].mean()) if easy.any() else None,
        "mean_sigma_hard": float(sigma[~easy].mean()) if (~easy).any() else None,
        "weight_easy": float(sigma[easy].sum() / total) if total > 0 else None,
    }
