"""The fused LIF op: sj_ext's kernels of both neurons, on a GPU (``backend='cupy'``) and a CPU
(``backend='cpu'``).

:func:`lif_multi_step` is the fused counterpart of
:func:`sj_ext.functional.lif_multi_step`, with the same
:class:`~sj_ext.functional.LIFParameters`; the neurons use it in step mode
``'m'`` with a fused backend (see :func:`sj_ext.neuron.set_backend`). CuPy
is imported only when a kernel runs. Layout of this package:

* ``kernels/``: the sources. ``lif_core.cuh``: the per-element maths, shared by
  all; ``lif_kernels.cu``: the CUDA kernels; ``lif_cpu.cpp``: the same kernels
  in loops for a CPU; ``host_shim.h``: CUDA's thread model on the host, for the
  check harness;
* :mod:`~sj_ext.fused_lif.source`: the sources, their configurations, their signatures;
* :mod:`~sj_ext.fused_lif.coverage`: what the kernels cover, surrogates in kernel form;
* :mod:`~sj_ext.fused_lif.lif`: the plan of a call (options, layout, memory order);
* :mod:`~sj_ext.fused_lif.ops`: the custom operators and their autograd formula;
* :mod:`~sj_ext.fused_lif.backends`: the fused backends by name;
* :mod:`~sj_ext.fused_lif.device`: compilation (NVRTC) and launches on torch's stream;
* :mod:`~sj_ext.fused_lif.cpu`: the CPU backend (g++ with OpenMP);
* :mod:`~sj_ext.fused_lif.host`: compiling for the host, and the check harness
  (the CUDA kernels under g++), for tests and CI.
"""

from .backends import require_launcher
from .coverage import surrogate_spec, unsupported_reason, warn_fallback
from .cpu import KernelsUnavailable
from .device import INSTALL_HINT
from .lif import lif_multi_step
from .source import KernelConfig, kernel_source

__all__ = [
    "INSTALL_HINT",
    "KernelConfig",
    "KernelsUnavailable",
    "kernel_source",
    "lif_multi_step",
    "require_launcher",
    "surrogate_spec",
    "unsupported_reason",
    "warn_fallback",
]
