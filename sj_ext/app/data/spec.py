"""What a dataset builder returns (:class:`DataSpec`) and how the engine makes its batches
time-major: a static batch ``[N, C, H, W]`` -> ``[T, N, C, H, W]`` (:func:`encode`), a
sequence batch ``[N, T, ...]`` -> ``[T, N, ...]`` (:func:`to_time_major`).
"""

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

__all__ = ["DataSpec", "encode", "to_time_major"]

LAYOUTS = ("static", "sequence")


@dataclass
class DataSpec:
    train: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    layout: str = "static"
    #: carved from ``train`` by the engine (``data.val_samples``); builders leave it None
    val: Dataset | None = None

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")


def encode(x: torch.Tensor, T: int, encoding: str) -> torch.Tensor:
    """Static batch ``[N, *]`` -> ``[T, N, *]``.

    ``'direct'``: the input repeated at every step (the analog input is the
    first layer's current). ``'poisson'``: Bernoulli spikes with probability
    ``x`` (clamped to [0, 1]) drawn independently at every step.
    """
    x_seq = x.unsqueeze(0).expand(T, *x.shape)
    if encoding == "direct":
        return x_seq
    if encoding == "poisson":
        return (torch.rand_like(x_seq) < x_seq.clamp(0, 1)).to(x.dtype)
    raise ValueError(f"encoding must be 'direct' or 'poisson', got {encoding!r}")


def to_time_major(x: torch.Tensor) -> torch.Tensor:
    """Sequence batch ``[N, T, *]`` -> ``[T, N, *]``."""
    return x.transpose(0, 1)
