"""Networks for the multi-receptive-field grouping method (Yao et al., ACML 2023).

Both are built for :class:`~sj_ext.neuron.DilatedWindowLIF` (neuron
``dilated_window_lif``): the model sets what depends on the layer's place,
``window`` (alternating ``'block'`` / ``'dilated'`` from layer to layer, the
plugin's form of the public code's alternation of non-overlapping and
overlapping windows), ``groups`` and, for tokens, ``dims``, through
``spiking_neuron(window=..., groups=..., dims=...)``; the recipe's neuron
arguments set the dynamics (``tau``, ``projection``, ``theta``, threshold).
The paper trains them with ``T = 1``: the groups make a layer recurrent
within one step.

**Reading** (``docs/methods.md``, Grouping: the paper gives the neuron, not the
networks; the public code is a Sequencer2D hybrid): ``grouping_cnn`` is a
VGG-style spiking CNN, ``grouping_rnn`` runs the grouped recurrence over a
sequence of patch tokens, the paper's RNN variant.
"""

from collections.abc import Callable
from itertools import cycle

import torch
import torch.nn as nn
from spikingjelly.activation_based import layer

from ..options import WINDOWS, Window, check_choice

__all__ = ["alternating_windows", "GroupingRNN", "FeatureBatchNorm"]


def alternating_windows(first: Window, count: int, alternate: bool = True) -> list[Window]:
    """``count`` windows alternating between ``'block'`` and ``'dilated'``, from ``first``
    (every one ``first`` when not ``alternate``)."""
    check_choice("first_window", first, WINDOWS)
    order = cycle(WINDOWS if first == "block" else WINDOWS[::-1]) if alternate else cycle([first])
    return [next(order) for _ in range(count)]


def grouping_cnn(
    num_classes: int,
    in_channels: int,
    spiking_neuron: Callable[..., nn.Module],
    widths: tuple[int, ...] = (128, 256, 512),
    depth: int = 2,
    groups: tuple[int, int] = (2, 2),
    first_window: str = "block",
    alternate: bool = True,
) -> nn.Module:
    """Spiking CNN with grouped neurons: ``[T, N, C, H, W]`` -> ``[T, N, num_classes]``.

    Per stage ``s`` (width ``widths[s]``): ``depth`` x (conv3x3 - BN - grouped
    SN), then max-pool 2 (not after the last stage); global average pool; FC to
    the classes (the logits, no neuron). The grouped neurons' windows alternate
    layer by layer from ``first_window`` over the grid ``groups`` (``(gh,
    gw)``), so every stage's map must divide by the grid (32 x 32 inputs with
    three stages: 32, 16, 8). ``alternate=False`` gives every layer ``first_window``.
    """
    windows = iter(alternating_windows(first_window, len(widths) * depth, alternate))
    layers, channels = [], in_channels
    for s, width in enumerate(widths):
        for _ in range(depth):
            layers += [
                layer.Conv2d(channels, width, 3, padding=1, bias=False),
                layer.BatchNorm2d(width),
                spiking_neuron(window=next(windows), groups=tuple(groups)),
            ]
            channels = width
        if s < len(widths) - 1:
            layers.append(layer.MaxPool2d(2))
    return nn.Sequential(
        *layers,
        layer.AdaptiveAvgPool2d(1),
        layer.Flatten(),
        layer.Linear(channels, num_classes),
    )


class FeatureBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last dim of ``[*, D]``: statistics over every other position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class GroupingRNN(nn.Module):
    """Grouped spiking recurrence over patch tokens.

    ``[T, N, C, H, W]`` -> patch embedding (conv ``patch_size`` x ``patch_size``,
    stride ``patch_size``, to ``dim`` channels) - BN -> tokens ``[T, N, L, dim]``
    (``L = (H / patch_size) (W / patch_size)``, row-major) -> grouped SN; then
    ``depth`` x (Linear dim-dim - BN - grouped SN); mean over the tokens; FC to
    the classes -> ``[T, N, num_classes]``.

    Every grouped SN splits the ``L`` tokens (``dims=(-2,)`` of the per-step
    ``[N, L, dim]``) into ``groups`` groups updated one after another, each fed
    by the previous one's membrane: a recurrence along the token sequence.
    ``L`` must divide by ``groups``.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        spiking_neuron: Callable[..., nn.Module],
        dim: int,
        depth: int,
        patch_size: int,
        groups: int,
        first_window: str,
    ):
        super().__init__()
        neurons = [
            spiking_neuron(window=w, dims=(-2,), groups=(groups,))
            for w in alternating_windows(first_window, depth + 1)
        ]
        self.embed = nn.Sequential(
            layer.Conv2d(in_channels, dim, patch_size, patch_size, bias=False),
            layer.BatchNorm2d(dim),
        )
        self.embed_neuron = neurons[0]
        self.mix = nn.Sequential(
            *[
                nn.Sequential(nn.Linear(dim, dim, bias=False), FeatureBatchNorm(dim), sn)
                for sn in neurons[1:]
            ]
        )
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"GroupingRNN expects [T, N, C, H, W], got shape {tuple(x.shape)}")
        tokens = self.embed(x).flatten(3).transpose(2, 3)  # [T, N, L, dim]
        return self.head(self.mix(self.embed_neuron(tokens)).mean(2))


def grouping_rnn(
    num_classes: int,
    in_channels: int,
    spiking_neuron: Callable[..., nn.Module],
    dim: int = 384,
    depth: int = 4,
    patch_size: int = 4,
    groups: int = 4,
    first_window: str = "block",
) -> nn.Module:
    """:class:`GroupingRNN`: ``[T, N, C, H, W]`` -> ``[T, N, num_classes]``."""
    return GroupingRNN(
        num_classes, in_channels, spiking_neuron, dim, depth, patch_size, groups, first_window
    )
