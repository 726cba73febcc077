"""The CPU check harness: the CUDA kernels compiled by g++ and launched through ctypes.

:class:`HostLauncher` compiles :func:`~sj_ext.fused_lif.source.kernel_source`
(float32 / float64 / bfloat16 storage; float16's conversions are PTX, device-only)
with ``kernels/host_shim.h``, which emulates the CUDA thread model (blocks
in turn, the threads of a block as fibers that meet at ``__syncthreads``),
and launches its kernels with the same arguments as
:class:`~sj_ext.fused_lif.device.CupyLauncher` on CPU tensors. The autograd
function of :mod:`sj_ext.fused_lif.lif` runs unchanged on it, so CI without a GPU
checks the kernels' arithmetic, their reductions and the launch sequence
against the torch backend. It is a test instrument: slow, single-threaded.
"""

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

from .device import register_launcher
from .source import (
    KERNEL_DIR,
    KernelConfig,
    acc_dtype,
    data_ptr,
    kernel_signatures,
    kernel_source,
    ordered_args,
)

__all__ = ["HostLauncher", "host_compiler"]

#: g++ flags: no contraction into FMA, so every op rounds as the torch reference's ops do
CXXFLAGS = ("-std=c++17", "-O1", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math")


def host_compiler() -> str | None:
    """Path of the C++ compiler for the harness (``$CXX`` or ``g++``), or None."""
    return shutil.which(os.environ.get("CXX", "g++"))


def _harness_source() -> str:
    entries = "".join(
        f'  if (!strcmp(name, "{k}")) {{ sj_host::launch({k}, grid, block, args); return 0; }}\n'
        for k in kernel_signatures()
    )
    return (
        (KERNEL_DIR / "host_shim.h").read_text()
        + kernel_source()
        + '\nextern "C" int sj_launch(const char* name, unsigned grid, unsigned block, '
        + "void** args) {\n"
        + entries
        + "  return -1;\n}\n"
    )


class HostLauncher:
    """Launch the fused kernels on the CPU (see the module docstring).

    :param build_dir: where the compiled libraries are cached (named by a hash of
        source, configuration and flags); default: a fresh temporary directory
    :param block: threads per block (a power of two <= 256)
    :param max_blocks: most blocks per launch; small, so that the tests run the
        grid-stride loops and the multi-block reductions
    """

    def __init__(self, build_dir=None, block: int = 32, max_blocks: int = 4):
        if block < 1 or block > 256 or block & (block - 1):
            raise ValueError(f"block must be a power of two <= 256, got {block}")
        self.build_dir = Path(build_dir or tempfile.mkdtemp(prefix="sj_ext_host_"))
        self.block = block
        self.max_blocks = max_blocks
        self._libraries: dict[KernelConfig, ctypes.CDLL] = {}
        self.key = register_launcher(self)

    def grid(self, items: int, device: torch.device) -> int:
        """Blocks for ``items`` chains: one chain per thread, at most ``max_blocks``."""
        return max(1, min(-(-items // self.block), self.max_blocks))

    def library(self, config: KernelConfig) -> ctypes.CDLL:
        """The harness compiled for ``config`` (compiled once, then cached)."""
        if config not in self._libraries:
            compiler = host_compiler()
            if compiler is None:
                raise RuntimeError("the CPU kernel harness needs a C++ compiler (g++ or $CXX)")
            source = _harness_source()
            flags = (*CXXFLAGS, *config.defines())
            key = hashlib.sha256((source + " ".join(flags)).encode()).hexdigest()[:16]
            lib = self.build_dir / f"sj_lif_{key}.so"
            if not lib.exists():
                self.build_dir.mkdir(parents=True, exist_ok=True)
                cpp = lib.with_suffix(".cpp")
                cpp.write_text(source)
                tmp = lib.with_suffix(f".{os.getpid()}.tmp")
                out = subprocess.run(
                    [compiler, *flags, str(cpp), "-o", str(tmp)], capture_output=True, text=True
                )
                if out.returncode:
                    raise RuntimeError(f"{compiler} failed on {cpp}:\n{out.stderr}")
                tmp.replace(lib)
            library = ctypes.CDLL(str(lib))
            library.sj_launch.restype = ctypes.c_int
            library.sj_launch.argtypes = [
                ctypes.c_char_p,
                ctypes.c_uint,
                ctypes.c_uint,
                ctypes.POINTER(ctypes.c_void_p),
            ]
            self._libraries[config] = library
        return self._libraries[config]

    def __call__(self, config: KernelConfig, name: str, blocks: int, device, sweep=None, **args):
        """Launch kernel ``name`` on ``blocks`` blocks of :attr:`block` threads (synchronously).

        :param sweep: ``(parameter, values)``: one launch per value, in order
        """
        acc = ctypes.c_double if acc_dtype(config.dtype) == torch.float64 else ctypes.c_float
        kinds = {"ptr": ctypes.c_void_p, "int": ctypes.c_int32, "int64": ctypes.c_int64, "acc": acc}
        ordered, swept = ordered_args(name, args, sweep)
        values = [kinds[kind](data_ptr(v) if kind == "ptr" else v) for kind, v in ordered]
        pointers = (ctypes.c_void_p * len(values))(*(ctypes.addressof(v) for v in values))
        library = self.library(config)
        for value in [None] if sweep is None else sweep[1]:
            if sweep is not None:
                values[swept].value = value
            if library.sj_launch(name.encode(), blocks, self.block, pointers):
                raise RuntimeError(f"the harness has no kernel {name!r}")
