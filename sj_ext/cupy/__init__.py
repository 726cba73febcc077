"""Fused CUDA kernels of the sj_ext LIF neurons (``backend='cupy'``), launched through CuPy.

:func:`lif_multi_step` is the fused counterpart of
:func:`sj_ext.functional.adaptive_lif_multi_step` and
:func:`sj_ext.functional.grouped_lif_multi_step`; the neurons use it in
step mode ``'m'`` with ``backend='cupy'`` (see
:func:`sj_ext.functional.set_backend`). CuPy is imported only when a kernel
runs. Layout of this package:

* ``kernels/``: the CUDA source (``lif_core.cuh``: the per-element maths;
  ``lif_kernels.cu``: the kernels) and the CPU shim of the check harness;
* :mod:`~sj_ext.cupy.source`: the source, its configurations, its signatures;
* :mod:`~sj_ext.cupy.lif`: the autograd function and what the kernels cover;
* :mod:`~sj_ext.cupy.device`: compilation (NVRTC) and launches on torch's stream;
* :mod:`~sj_ext.cupy.host`: the CPU check harness (g++), for tests and CI.
"""

from .device import INSTALL_HINT, require_launcher
from .lif import lif_multi_step, surrogate_spec, unsupported_reason, warn_fallback
from .source import KernelConfig, kernel_source

__all__ = [
    "INSTALL_HINT",
    "KernelConfig",
    "kernel_source",
    "lif_multi_step",
    "require_launcher",
    "surrogate_spec",
    "unsupported_reason",
    "warn_fallback",
]
