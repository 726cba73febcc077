"""Spiking ResNets with SEW-ADD residuals and tdBN: ResNet19 (CIFAR) and ResNet18/34 (ImageNet).

DS-ATGO's networks (``docs/methods.md``, DS-ATGO). A block is

    conv3x3(stride) - tdBN - SN - conv3x3 - tdBN - SN,  then  + shortcut   (SEW-ADD)

where the shortcut is the input, or ``conv1x1(stride) - tdBN - SN`` when the
stride or the width changes: the sum is taken after the second spike, so a
block's output is a spike count (0, 1 or 2). tdBN (Zheng et al., AAAI 2021)
is SpikingJelly's ``ThresholdDependentBatchNorm``: batch statistics over the
``T * N`` samples of a step sequence, weight initialised to
:math:`\\alpha V_{th}`.

Shapes: ``[T, N, C, H, W]`` -> ``[T, N, num_classes]``. The modules are named as
torchvision names a ResNet's: ``stem``, ``layer1`` .. ``layerN`` (one per stage, its
blocks numbered from 0), ``pool``, ``flatten``, ``head``; so a neuron is found by its
path (``layer2.0.residual.2``), in the monitors and reports as in the ``state_dict``.
"""

from collections import OrderedDict
from collections.abc import Callable
from functools import partial

import torch.nn as nn
from spikingjelly.activation_based import layer

__all__ = ["SEWBlock", "sew_resnet", "sew_resnet_small"]


class SEWBlock(nn.Module):
    """A SEW-ADD basic block; ``norm(channels)`` builds the block's batch norms."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        spiking_neuron: Callable[..., nn.Module],
        norm: Callable[[int], nn.Module],
    ):
        super().__init__()
        self.residual = nn.Sequential(
            layer.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            norm(out_channels),
            spiking_neuron(),
            layer.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            norm(out_channels),
            spiking_neuron(),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else nn.Sequential(
                layer.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                norm(out_channels),
                spiking_neuron(),
            )
        )

    def forward(self, x):
        """``[T, N, in_channels, H, W]`` -> ``[T, N, out_channels, H / stride, W / stride]``."""
        return self.residual(x) + self.shortcut(x)


def sew_resnet(
    in_channels: int,
    spiking_neuron: Callable[..., nn.Module],
    stem: list[nn.Module],
    stages: list[tuple[int, int, int]],
    head: list[nn.Module],
    norm: Callable[[int], nn.Module],
) -> nn.Sequential:
    """``stem``, then per ``(width, blocks, stride)`` stage ``layer<k>``, its
    :class:`SEWBlock` s (the first with ``stride``), global average pooling
    (``pool``), ``flatten``, ``head``.

    ``in_channels`` is the stem's output width.
    """
    named = [("stem", nn.Sequential(*stem))]
    for k, (width, count, stride) in enumerate(stages, 1):
        blocks = []
        for i in range(count):
            blocks.append(
                SEWBlock(in_channels, width, stride if i == 0 else 1, spiking_neuron, norm)
            )
            in_channels = width
        named.append((f"layer{k}", nn.Sequential(*blocks)))
    named += [("pool", layer.AdaptiveAvgPool2d(1)), ("flatten", layer.Flatten())]
    net = nn.Sequential(OrderedDict([*named, ("head", nn.Sequential(*head))]))
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


def _tdbn(alpha: float, v_threshold: float, dims: int = 2):
    cls = layer.ThresholdDependentBatchNorm2d if dims == 2 else layer.ThresholdDependentBatchNorm1d
    return partial(cls, alpha, v_threshold)


def resnet19(
    num_classes: int,
    in_channels: int,
    spiking_neuron: Callable[..., nn.Module],
    alpha: float = 1.0,
    v_threshold: float = 1.0,
) -> nn.Module:
    """ResNet19 (tdBN paper; DS-ATGO's CIFAR network), for ``[T, N, C, 32, 32]`` inputs.

    conv3x3-128 + tdBN + SN; SEW blocks 3 x 128, 3 x 256 (stride 2), 2 x 512
    (stride 2); global average pool; FC512-256 + tdBN1d + SN; FC256-classes.
    The FC layers have no bias (as upstream DS-ATGO). ``alpha`` and
    ``v_threshold`` set tdBN's initial weight :math:`\\alpha V_{th}`.
    """
    norm = _tdbn(alpha, v_threshold)
    stem = [layer.Conv2d(in_channels, 128, 3, 1, 1, bias=False), norm(128), spiking_neuron()]
    head = [
        layer.Linear(512, 256, bias=False),
        _tdbn(alpha, v_threshold, dims=1)(256),
        spiking_neuron(),
        layer.Linear(256, num_classes, bias=False),
    ]
    stages = [(128, 3, 1), (256, 3, 2), (512, 2, 2)]
    return sew_resnet(128, spiking_neuron, stem, stages, head, norm)


def _imagenet_resnet(
    blocks: tuple[int, ...], num_classes, in_channels, spiking_neuron, alpha, v_threshold
) -> nn.Module:
    norm = _tdbn(alpha, v_threshold)
    stem = [
        layer.Conv2d(in_channels, 64, 7, 2, 3, bias=False),
        norm(64),
        spiking_neuron(),
        layer.MaxPool2d(3, 2, 1),
    ]
    widths = (64, 128, 256, 512)
    stages = [
        (w, n, 1 if i == 0 else 2) for i, (w, n) in enumerate(zip(widths, blocks, strict=True))
    ]
    return sew_resnet(64, spiking_neuron, stem, stages, [layer.Linear(512, num_classes)], norm)


def sew_resnet_small(
    num_classes: int,
    in_channels: int,
    spiking_neuron: Callable[..., nn.Module],
    widths: tuple[int, ...] = (16, 32, 64),
    blocks: tuple[int, ...] = (1, 1, 1),
    alpha: float = 1.0,
    v_threshold: float = 1.0,
) -> nn.Module:
    """A narrow SEW-ResNet with tdBN for small images (MNIST-sized ``[T, N, C, 28, 28]``).

    DS-ATGO's network family at a width a CPU can train: conv3x3-``widths[0]``
    + tdBN + SN; per stage ``s`` ``blocks[s]`` SEW blocks of width ``widths[s]``
    (stride 2 from the second stage: 28, 14, 7); global average pool; a
    real-valued FC to the classes (the logits, no neuron), as DS-ATGO's read-out.
    """
    if len(widths) != len(blocks) or not widths:
        raise ValueError(
            f"widths and blocks must have one entry per stage, "
            f"got widths={list(widths)} and blocks={list(blocks)}"
        )
    norm = _tdbn(alpha, v_threshold)
    stem = [
        layer.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
        norm(widths[0]),
        spiking_neuron(),
    ]
    stages = [
        (w, n, 1 if i == 0 else 2) for i, (w, n) in enumerate(zip(widths, blocks, strict=True))
    ]
    head = [layer.Linear(widths[-1], num_classes)]
    return sew_resnet(widths[0], spiking_neuron, stem, stages, head, norm)


def resnet18(
    num_classes: int,
    in_channels: int,
    spiking_neuron: Callable[..., nn.Module],
    alpha: float = 1.0,
    v_threshold: float = 1.0,
) -> nn.Module:
    """Spiking ResNet-18 (SEW-ADD, tdBN), for ImageNet-sized inputs ``[T, N, C, 224, 224]``.

    conv7x7-64 stride 2 + tdBN + SN + max-pool 3 stride 2; SEW blocks 2 x 64,
    2 x 128, 2 x 256, 2 x 512 (stride 2 from the second stage); global average
    pool; FC512-classes.
    """
    return _imagenet_resnet(
        (2, 2, 2, 2), num_classes, in_channels, spiking_neuron, alpha, v_threshold
    )


def resnet34(
    num_classes: int,
    in_channels: int,
    spiking_neuron: Callable[..., nn.Module],
    alpha: float = 1.0,
    v_threshold: float = 1.0,
) -> nn.Module:
    """Spiking ResNet-34 (SEW-ADD, tdBN): :func:`resnet18` with 3, 4, 6, 3 blocks per stage."""
    return _imagenet_resnet(
        (3, 4, 6, 3), num_classes, in_channels, spiking_neuron, alpha, v_threshold
    )
