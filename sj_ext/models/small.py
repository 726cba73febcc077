"""Small spiking CNNs for quick runs on small images."""

from collections.abc import Callable

import torch.nn as nn
from spikingjelly.activation_based import layer


def small_cnn(
    num_classes: int,
    in_channels: int,
    spiking_neuron: Callable[[], nn.Module],
    channels: int = 32,
    image_size: int = 8,
) -> nn.Module:
    """conv3x3-``channels`` + BN + spike, max-pool 2, linear read-out (no spike).

    The read-out's per-step outputs are the logits (decoded by the loss / the
    mean over T). For ``[T, N, in_channels, image_size, image_size]`` inputs.
    """
    if image_size % 2:
        raise ValueError(f"small_cnn needs an even image_size, got {image_size}")
    return nn.Sequential(
        layer.Conv2d(in_channels, channels, 3, padding=1, bias=False),
        layer.BatchNorm2d(channels),
        spiking_neuron(),
        layer.MaxPool2d(2),
        layer.Flatten(),
        layer.Linear(channels * (image_size // 2) ** 2, num_classes),
    )
