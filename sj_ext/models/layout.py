r"""Channels-last memory format for multi-step networks (``train.channels_last``).

``torch.channels_last`` is defined for 4-d tensors ``[N, C, H, W]`` (strides
``(HWC, 1, WC, C)``). A multi-step activation ``[T, N, C, H, W]`` is
channels-last when its ``[T * N, C, H, W]`` view is: strides
``(N HWC, HWC, 1, WC, C)``, what SpikingJelly's multi-step ``Conv2d`` returns
for a channels-last convolution. The element values never change, only their
order in memory; convolutions and BatchNorm on GPUs (cuDNN, tensor cores) run
faster on NHWC, and the neurons keep the layout of their input.
"""

import torch
import torch.nn as nn

__all__ = ["to_channels_last"]


def to_channels_last(obj):
    """``obj`` in channels-last memory format.

    :param obj: a module (its 4-d parameters and buffers, the convolution
        weights, are converted in place; the module is returned), or a tensor
        ``[N, C, H, W]`` / ``[T, N, C, H, W]`` (a channels-last copy, or ``obj``
        itself when it already is); tensors of any other rank are returned as they are
    """
    if isinstance(obj, nn.Module):
        return obj.to(memory_format=torch.channels_last)
    if obj.dim() == 4:
        return obj.contiguous(memory_format=torch.channels_last)
    if obj.dim() == 5:
        flat = obj.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        return flat.unflatten(0, obj.shape[:2])
    return obj
