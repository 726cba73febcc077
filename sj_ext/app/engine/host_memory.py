r"""Keep freed host memory in the process while a run trains on the CPU.

glibc's ``malloc`` serves every block above its mmap threshold (at most
32 MiB on 64-bit Linux) with a fresh ``mmap`` and hands it back to the kernel
on ``free``. A training step allocates and frees the same large activations
over and over: one ``[T * N, C, H, W]`` float tensor of the PLIF MNIST net at
64 channels, T = 4 and batch 64 is 51 MB, so each of them is mapped,
page-faulted and zeroed by the kernel anew at every use. With
``M_MMAP_MAX = 0`` every block comes from the heap, and with a high
``M_TRIM_THRESHOLD`` the freed top of the heap stays in the process for the
next step. ``benchmarks/bench_host_memory.py`` measures the step time with and
without it (``docs/benchmarks.md``).

The cost is that the process's resident memory no longer shrinks after its
peak, which a training process reaches in its first step anyway.
"""

import ctypes
import sys

__all__ = ["keep_freed_memory"]

# mallopt parameters, <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_BYTES = 2**31 - 1  # M_TRIM_THRESHOLD is an int


def keep_freed_memory() -> bool:
    """Make this process's ``malloc`` keep freed blocks (glibc on Linux only).

    Process-wide; forked data-loader workers inherit it.

    :return: whether it was set: ``False`` on other systems and C libraries,
        where nothing is changed
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: no such mallopt
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
