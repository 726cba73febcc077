"""VGGSNN (Deng et al., TET, ICLR 2022): the CIFAR10-DVS network of DS-ATGO's comparison.

    64c3 - 128c3 - AP2 - 256c3 - 256c3 - AP2 - 512c3 - 512c3 - AP2 - 512c3 - 512c3 - AP2 - FC

every conv followed by BN (over ``T * N``) and a spiking neuron; the FC reads
the flattened last maps (``512 x (S/16) x (S/16)``, 3 x 3 for TET's 48 x 48
frames) and has no neuron: its per-step outputs are the logits. Convs have no
bias (BN follows).

Shapes: ``[T, N, C, S, S]`` -> ``[T, N, num_classes]``.
"""

from collections.abc import Callable

import torch.nn as nn
from spikingjelly.activation_based import layer

VGGSNN = (64, 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A")


def vggsnn(
    num_classes: int,
    in_channels: int,
    spiking_neuron: Callable[..., nn.Module],
    image_size: int = 48,
) -> nn.Module:
    """VGGSNN for square inputs of side ``image_size`` (a multiple of 16)."""
    if image_size % 16:
        raise ValueError(f"vggsnn needs image_size divisible by 16, got {image_size}")
    layers, channels = [], in_channels
    for item in VGGSNN:
        if item == "A":
            layers.append(layer.AvgPool2d(2))
            continue
        layers += [
            layer.Conv2d(channels, item, 3, padding=1, bias=False),
            layer.BatchNorm2d(item),
            spiking_neuron(),
        ]
        channels = item
    side = image_size // 16
    return nn.Sequential(
        *layers, layer.Flatten(), layer.Linear(channels * side * side, num_classes)
    )
