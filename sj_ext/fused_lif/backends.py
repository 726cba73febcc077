"""The fused backends by name: ``'cupy'`` (CUDA tensors) and ``'cpu'`` (CPU tensors)."""

import torch

from .cpu import require_cpu_launcher
from .device import require_cuda_launcher

__all__ = ["FUSED_BACKENDS", "require_launcher"]

#: the neurons' fused backends and what finds their launcher for an input
FUSED_BACKENDS = {"cupy": require_cuda_launcher, "cpu": require_cpu_launcher}


def require_launcher(x: torch.Tensor, backend: str) -> int:
    """The key of ``backend``'s launcher for input ``x``.

    :raises RuntimeError: what ``backend`` misses for ``x`` (CuPy, a CUDA
        device; a CPU tensor); :class:`~sj_ext.fused_lif.cpu.KernelsUnavailable`
        (a ``RuntimeError``) when the CPU kernels cannot be built here
    """
    return FUSED_BACKENDS[backend](x)
