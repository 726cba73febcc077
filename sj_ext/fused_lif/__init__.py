"""The fused LIF op: sj_ext's CUDA kernels of both neurons (``backend='cupy'``), launched by CuPy.

:func:`lif_multi_step` is the fused counterpart of
:func:`sj_ext.functional.lif_multi_step`, with the same
:class:`~sj_ext.functional.LIFParameters`; the neurons use it in step mode
``'m'`` with ``backend='cupy'`` (see :func:`sj_ext.neuron.set_backend`). CuPy
is imported only when a kernel runs. Layout of this package:

* ``kernels/``: the CUDA source (``lif_core.cuh``: the per-element maths;
  ``lif_kernels.cu``: the kernels) and the CPU shim of the check harness;
* :mod:`~sj_ext.fused_lif.source`: the source, its configurations, its signatures;
* :mod:`~sj_ext.fused_lif.coverage`: what the kernels cover, surrogates in kernel form;
* :mod:`~sj_ext.fused_lif.lif`: the plan of a call and the autograd function;
* :mod:`~sj_ext.fused_lif.device`: compilation (NVRTC) and launches on torch's stream;
* :mod:`~sj_ext.fused_lif.host`: the CPU check harness (g++), for tests and CI.
"""

from .coverage import surrogate_spec, unsupported_reason, warn_fallback
from .device import INSTALL_HINT, require_launcher
from .lif import lif_multi_step
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
