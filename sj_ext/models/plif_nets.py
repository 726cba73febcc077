"""The PLIF paper's networks (Fang et al., ICCV 2021), as SpikingJelly 2.0 ships them.

``spikingjelly.activation_based.model.parametric_lif_net`` builds every
spiking layer as ``spiking_neuron(**kwargs)`` with the keyword arguments the
net was given; we give none, so each layer is ``spiking_neuron()``, a fresh
neuron configured by the recipe (neuron, surrogate and their arguments).
"""

from collections.abc import Callable

import torch.nn as nn
from spikingjelly.activation_based.model import parametric_lif_net as plif

# variant -> (class, input channels, classes)
VARIANTS = {
    "mnist": (plif.MNISTNet, 1, 10),
    "fashion_mnist": (plif.FashionMNISTNet, 1, 10),
    "nmnist": (plif.NMNISTNet, 2, 10),
    "cifar10": (plif.CIFAR10Net, 3, 10),
    "cifar10dvs": (plif.CIFAR10DVSNet, 2, 10),
    "dvsgesture": (plif.DVSGestureNet, 2, 11),
}


def parametric_lif_net(
    num_classes: int,
    in_channels: int,
    spiking_neuron: Callable[..., nn.Module],
    variant: str,
    channels: int | None = None,
) -> nn.Module:
    """SpikingJelly's ``parametric_lif_net.<Variant>Net``: ``[T, N, C, H, W]`` -> ``[T, N, K]``.

    ``variant`` (input shape per step, ``K`` classes, architecture):

    * ``mnist``, ``fashion_mnist``: ``[1, 28, 28]``, 10 classes; c128c3-BN-SN-MP2 x2,
      DP-FC2048-SN, DP-FC100-SN, vote 10
    * ``nmnist``: ``[2, 34, 34]``, 10 classes; the same with 2 input channels
    * ``cifar10``: ``[3, 32, 32]``, 10 classes; (c256c3-BN-SN x3, MP2) x2, DP-FC2048-SN,
      DP-FC100-SN, vote 10
    * ``cifar10dvs``: ``[2, 128, 128]``, 10 classes; c128c3-BN-SN-MP2 x4, DP-FC512-SN,
      DP-FC100-SN, vote 10
    * ``dvsgesture``: ``[2, 128, 128]``, 11 classes; c128c3-BN-SN-MP2 x5, DP-FC512-SN,
      DP-FC110-SN, vote 10

    ``channels`` is the width of every conv layer (default: the net's own, 128
    or 256). The output is the voting layer's mean firing rate of each class's
    10 read-out neurons, per step. The architecture is fixed by the variant,
    so the dataset must match its input channels and classes.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    cls, channels_in, classes = VARIANTS[variant]
    if (in_channels, num_classes) != (channels_in, classes):
        raise ValueError(
            f"parametric_lif_net variant {variant!r} takes {channels_in} input channels and "
            f"{classes} classes; the dataset gives {in_channels} and {num_classes}"
        )
    width = {} if channels is None else {"channels": channels}
    return cls(spiking_neuron=spiking_neuron, **width)
