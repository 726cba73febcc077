"""The CUDA kernels compiled by g++ and launched through ctypes, on CPU tensors.

:class:`CompiledLauncher` compiles :func:`~sj_ext.fused_lif.source.kernel_source`
(float32 / float64 / bfloat16 storage; float16's conversions are PTX, device-only)
behind a *shim*, a header that defines CUDA's names for the host, and
launches its kernels with the same arguments as
:class:`~sj_ext.fused_lif.device.CupyLauncher`. The autograd function of
:mod:`sj_ext.fused_lif.ops` runs unchanged on it. Two shims, two launchers:

* :class:`HostLauncher`, the check harness (``kernels/host_shim.h``): the CUDA
  thread model emulated (blocks in turn, the threads of a block as fibers that
  meet at ``__syncthreads``), so CI without a GPU checks the kernels'
  arithmetic, their grid-stride loops, block reductions and launch sequence
  against the torch backend. A test instrument: slow, single-threaded.
* :class:`~sj_ext.fused_lif.cpu.CpuLauncher`, the fused CPU backend
  (``kernels/cpu_shim.h``): blocks of one thread over contiguous chains, in an
  OpenMP parallel loop, compiled with ``-O3``.
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

__all__ = ["CXXFLAGS", "CompiledLauncher", "HostLauncher", "host_compiler"]

#: g++ flags of every build: no contraction into FMA and no fast maths, so every op
#: rounds as the torch reference's ops do
CXXFLAGS = ("-std=c++17", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math")


def host_compiler() -> str | None:
    """Path of the C++ compiler for the kernels on the host (``$CXX`` or ``g++``), or None."""
    return shutil.which(os.environ.get("CXX", "g++"))


def launcher_source(kernels: str) -> str:
    """``kernels`` (a source that defines ``sj_shim::launch``) and the entry point
    ``sj_launch(name, grid, block, args)`` that launches the kernel ``name``."""
    entries = "".join(
        f'  if (!strcmp(name, "{k}")) {{ sj_shim::launch({k}, grid, block, args); return 0; }}\n'
        for k in kernel_signatures()
    )
    return (
        kernels
        + '\nextern "C" int sj_launch(const char* name, unsigned grid, unsigned block, '
        + "void** args) {\n"
        + entries
        + "  return -1;\n}\n"
    )


def compile_library(source: str, flags: tuple[str, ...], build_dir: Path) -> Path:
    """The shared library of C++ ``source`` built with ``flags`` in ``build_dir``.

    Named by a hash of source and flags, so it is built once and then found; the
    build goes to a temporary name first, so concurrent processes never load a
    half-written file.

    :raises RuntimeError: without a compiler, or naming the source and the
        compiler's errors when the build fails
    """
    compiler = host_compiler()
    if compiler is None:
        raise RuntimeError("compiling the kernels for the CPU needs a C++ compiler (g++ or $CXX)")
    key = hashlib.sha256((source + compiler + " ".join(flags)).encode()).hexdigest()[:16]
    lib = build_dir / f"sj_lif_{key}.so"
    if not lib.exists():
        build_dir.mkdir(parents=True, exist_ok=True)
        cpp = lib.with_suffix(f".{os.getpid()}.cpp")
        cpp.write_text(source)
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        out = subprocess.run(
            [compiler, *flags, str(cpp), "-o", str(tmp)], capture_output=True, text=True
        )
        if out.returncode:
            raise RuntimeError(f"{compiler} failed on {cpp}:\n{out.stderr}")
        tmp.replace(lib)
        cpp.unlink()
    return lib


class CompiledLauncher:
    """Launch fused kernels compiled for the host (see the module docstring).

    Subclasses set :attr:`flags`, :meth:`source` and :meth:`grid`.

    :param build_dir: where the compiled libraries are kept (named by a hash of
        source, configuration and flags)
    :param block: threads per block
    """

    flags: tuple[str, ...]

    def __init__(self, build_dir, block: int):
        self.build_dir = Path(build_dir)
        self.block = block
        self._libraries: dict[KernelConfig, ctypes.CDLL] = {}
        self.key = register_launcher(self)

    def source(self) -> str:
        """The kernels' C++ source, with ``sj_shim::launch``."""
        raise NotImplementedError

    def grid(self, items: int, device: torch.device) -> int:
        """Blocks for ``items`` chains."""
        raise NotImplementedError

    def library(self, config: KernelConfig) -> ctypes.CDLL:
        """The kernels compiled for ``config`` (compiled once, then cached)."""
        if config not in self._libraries:
            flags = (*self.flags, *config.defines())
            source = launcher_source(self.source())
            library = ctypes.CDLL(str(compile_library(source, flags, self.build_dir)))
            library.sj_launch.restype = ctypes.c_int
            library.sj_launch.argtypes = [
                ctypes.c_char_p,
                ctypes.c_uint,
                ctypes.c_uint,
                ctypes.POINTER(ctypes.c_void_p),
            ]
            self._libraries[config] = library
        return self._libraries[config]

    def prepare(self, library: ctypes.CDLL):
        """Called before the launches of a call (the CPU backend sets its thread count)."""

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
        self.prepare(library)
        for value in [None] if sweep is None else sweep[1]:
            if sweep is not None:
                values[swept].value = value
            if library.sj_launch(name.encode(), blocks, self.block, pointers):
                raise RuntimeError(f"the compiled kernels have no kernel {name!r}")


class HostLauncher(CompiledLauncher):
    """The check harness: the CUDA thread model on one OS thread (see the module docstring).

    :param build_dir: where the compiled libraries are cached; default: a fresh
        temporary directory
    :param block: threads per block (a power of two <= 256)
    :param max_blocks: most blocks per launch; small, so that the tests run the
        grid-stride loops and the multi-block reductions
    """

    flags = (*CXXFLAGS, "-O1")

    def __init__(self, build_dir=None, block: int = 32, max_blocks: int = 4):
        if block < 1 or block > 256 or block & (block - 1):
            raise ValueError(f"block must be a power of two <= 256, got {block}")
        super().__init__(build_dir or tempfile.mkdtemp(prefix="sj_ext_host_"), block)
        self.max_blocks = max_blocks

    def source(self) -> str:
        """``kernels/host_shim.h`` and the CUDA kernels."""
        return (KERNEL_DIR / "host_shim.h").read_text() + kernel_source()

    def grid(self, items: int, device: torch.device) -> int:
        """Blocks for ``items`` chains: one chain per thread, at most ``max_blocks``."""
        return max(1, min(-(-items // self.block), self.max_blocks))
