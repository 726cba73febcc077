"""The fused CPU backend (``backend='cpu'``): the CUDA kernels compiled by g++ with OpenMP.

The same ``kernels/lif_kernels.cu`` that NVRTC compiles for a GPU, behind
``kernels/cpu_shim.h`` (see :mod:`sj_ext.fused_lif.host`): one source of truth
for the per-element maths *and* the loops, so the CPU backend is the GPU
kernels' arithmetic, checked against the torch reference by the same tests.
Why not a second, CPU-shaped source: the kernels already keep a chain's whole
time loop in registers and read each input once, which is what a CPU needs
too; only the order of the chains differs (contiguous per OS thread, where a
GPU's threads interleave), and the shim sets that order.

Needs a C++ compiler with OpenMP (``g++``, or ``$CXX``). The library is
built on the first forward of each configuration (a few seconds) and kept in
``$SJ_EXT_KERNEL_CACHE`` (default ``~/.cache/sj_ext/kernels``). Without a
compiler, or when the build fails, :func:`require_cpu_launcher` raises
:class:`KernelsUnavailable` and the neurons run their torch backend after a
one-time warning that says why.
"""

import os
from functools import cache
from pathlib import Path

import torch

from .host import CXXFLAGS, CompiledLauncher
from .source import KernelConfig, cpu_kernel_source

__all__ = ["CHAINS_PER_BLOCK", "CpuLauncher", "KernelsUnavailable", "require_cpu_launcher"]

#: chains a block takes at most (blocks are the units the OS threads share out)
CHAINS_PER_BLOCK = 4096


class KernelsUnavailable(RuntimeError):
    """The fused CPU kernels cannot be built on this machine (the message says why)."""


def kernel_cache() -> Path:
    """Where the compiled CPU kernels are kept: ``$SJ_EXT_KERNEL_CACHE``, else under
    ``$XDG_CACHE_HOME`` (default ``~/.cache``) in ``sj_ext/kernels``."""
    if os.environ.get("SJ_EXT_KERNEL_CACHE"):
        return Path(os.environ["SJ_EXT_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sj_ext" / "kernels"


class CpuLauncher(CompiledLauncher):
    """Launch the fused kernels on CPU tensors, on torch's thread count.

    The chains are split into blocks of ``chains_per_block`` (the last one
    shorter); the per-block partial sums are merged in block order. The blocks
    depend on the chains only, never on the threads, so every result is the
    same on any thread count.

    :param build_dir: where the compiled libraries are kept (default :func:`kernel_cache`)
    :param chains_per_block: chains a block takes (small in tests: many blocks)
    """

    def __init__(self, build_dir=None, chains_per_block: int = CHAINS_PER_BLOCK):
        super().__init__(build_dir or kernel_cache(), block=1)
        self.chains_per_block = chains_per_block
        # -fno-trapping-math lets the compiler compute both sides of a select (a
        # surrogate's 1 / width) so that the loops vectorise; values are unchanged
        self.flags = (
            *CXXFLAGS,
            "-O3",
            "-fno-trapping-math",
            "-fopenmp",
            f"-DSJ_CPU_BLOCK={chains_per_block}",
        )

    def source(self) -> str:
        """``kernels/lif_cpu.cpp``."""
        return cpu_kernel_source()

    def grid(self, items: int, device: torch.device) -> int:
        """Blocks for ``items`` chains: ``ceil(items / chains_per_block)``."""
        return max(1, -(-items // self.chains_per_block))

    def prepare(self, library):
        """Run the coming launches on ``torch.get_num_threads()`` OS threads."""
        library.sj_set_threads(torch.get_num_threads())


@cache
def _default_launcher() -> CpuLauncher | str:
    """The process's CPU launcher, built for float32 once; or why it cannot be built."""
    launcher = CpuLauncher()
    try:
        launcher.library(KernelConfig(torch.float32))
    except (RuntimeError, OSError) as error:
        return str(error)
    return launcher


@torch._dynamo.assume_constant_result
def _default_key() -> int:
    """The key of :func:`_default_launcher` (-1 where it cannot be built): a constant to
    ``torch.compile``, which runs this once while tracing instead of tracing the build."""
    launcher = _default_launcher()
    return -1 if isinstance(launcher, str) else launcher.key


def require_cpu_launcher(x: torch.Tensor) -> int:
    """The key of the fused CPU launcher for input ``x``.

    :raises RuntimeError: for an input on a CUDA device
    :raises KernelsUnavailable: when the kernels cannot be built here (no C++
        compiler, or the build fails); the message says which
    """
    if x.device.type != "cpu":
        raise RuntimeError(
            f"backend='cpu' runs on CPU tensors, got an input on {x.device}: use "
            "backend='cupy' on a GPU (sj_ext.neuron.set_backend(net, 'cupy')), or 'torch'"
        )
    key = _default_key()
    if key < 0:
        raise KernelsUnavailable(
            f"the fused CPU kernels cannot be built here ({_default_launcher()})"
        )
    return key
