"""The kernel source, its configurations and its launch signatures.

One CUDA source (``kernels/lif_kernels.cu`` with ``kernels/lif_core.cuh``)
is compiled three ways, always from :func:`kernel_source`: by NVRTC through
CuPy on a GPU (:mod:`sj_ext.fused_lif.device`), by ``nvcc -ptx`` / NVRTC in CI to
check that it compiles for the target architectures, and by g++ into the CPU
check harness (:mod:`sj_ext.fused_lif.host`). The parameter lists of its
``extern "C" __global__`` kernels are parsed from the source, so the Python
side packs arguments by name against the one declaration.
"""

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

__all__ = [
    "KERNEL_DIR",
    "DTYPES",
    "PROJECTIONS",
    "SURROGATE_SHAPES",
    "KernelConfig",
    "cpu_kernel_source",
    "inlined_source",
    "kernel_source",
    "kernel_signatures",
    "acc_dtype",
    "ordered_args",
    "data_ptr",
]

KERNEL_DIR = Path(__file__).with_name("kernels")


def _codes(prefix: str) -> dict[str, int]:
    """``{name: value}`` of the source's ``#define <prefix><NAME> <int>`` (names lowercased)."""
    text = (KERNEL_DIR / "lif_core.cuh").read_text()
    return {n.lower(): int(v) for n, v in re.findall(rf"^#define {prefix}(\w+) (\d+)$", text, re.M)}


#: storage dtypes of the kernels and their ``SJ_DTYPE`` code
DTYPES = {getattr(torch, name): code for name, code in _codes("SJ_DTYPE_").items()}
#: projections of :mod:`sj_ext.functional.grouping` and their ``SJ_PROJ`` code
PROJECTIONS = _codes("SJ_PROJ_")
#: surrogate shapes of the kernels (``sj_surrogate_grad``) and their code
SURROGATE_SHAPES = _codes("SJ_SG_")


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The kernels' arithmetic type for storage ``dtype`` (``sj_acc``): float64 or float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@dataclass(frozen=True)
class KernelConfig:
    """What a compiled module is specialised on (one compilation each, then cached).

    :param dtype: storage dtype of the tensors (a key of :data:`DTYPES`)
    :param chain_length: groups per chain ``G`` (1 for independent neurons;
        :func:`sj_ext.functional.chain_length`)
    :param projection: a key of :data:`PROJECTIONS` (``'none'`` needs ``chain_length == 1``)
    """

    dtype: torch.dtype
    chain_length: int = 1
    projection: str = "none"

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise TypeError(f"the fused kernels take {list(DTYPES)}, not {self.dtype}")
        if self.projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {list(PROJECTIONS)}")
        if self.chain_length < 1 or (self.projection == "none" and self.chain_length != 1):
            raise ValueError("chain_length must be >= 1, and 1 with projection 'none'")

    def defines(self) -> tuple[str, ...]:
        """The ``-D`` options selecting this configuration."""
        return (
            f"-DSJ_DTYPE={DTYPES[self.dtype]}",
            f"-DSJ_G={self.chain_length}",
            f"-DSJ_PROJ={PROJECTIONS[self.projection]}",
        )


_INCLUDE = re.compile(r'^#include "([^"]+)"$', re.M)


@cache
def inlined_source(name: str) -> str:
    """``kernels/<name>`` with its local ``#include "..."`` inlined: one self-contained string."""
    text = (KERNEL_DIR / name).read_text()
    return _INCLUDE.sub(lambda m: inlined_source(m.group(1)), text)


def kernel_source() -> str:
    """The CUDA kernels: ``lif_kernels.cu``, inlined (:func:`inlined_source`)."""
    return inlined_source("lif_kernels.cu")


def cpu_kernel_source() -> str:
    """The fused CPU backend's kernels: ``lif_cpu.cpp``, inlined (:func:`inlined_source`)."""
    return inlined_source("lif_cpu.cpp")


_KERNEL = re.compile(r'extern "C" __global__ void (\w+)\(([^)]*)\)', re.S)


@cache
def kernel_signatures(source: str | None = None) -> dict[str, tuple[tuple[str, str], ...]]:
    """``{kernel: ((kind, name), ...)}`` in parameter order, parsed from ``source``
    (default :func:`kernel_source`; the CPU kernels have the same, tests check).

    ``kind`` is ``'ptr'`` (any pointer), ``'int'`` (int32), ``'int64'``
    (``long long``) or ``'acc'`` (``sj_acc``: float32, float64 for float64 storage).
    """
    kinds = {"int": "int", "long long": "int64", "sj_acc": "acc"}
    signatures = {}
    for name, params in _KERNEL.findall(source or kernel_source()):
        parsed = []
        for param in params.split(","):
            words = param.replace("*", " * ").split()
            ctype = " ".join(w for w in words[:-1] if w not in ("const", "__restrict__"))
            parsed.append(("ptr" if "*" in ctype else kinds[ctype], words[-1]))
        signatures[name] = tuple(parsed)
    return signatures


def ordered_args(name: str, args: dict, sweep=None) -> tuple[list[tuple[str, object]], int]:
    """The arguments of kernel ``name`` as ``(kind, value)`` in parameter order.

    Tensors (and ``None``, a null pointer) go to pointer parameters.

    :param sweep: ``(parameter, values)`` of a launch per value, or None
    :return: the list, and the position of the swept parameter (-1 without)
    :raises TypeError: naming the parameters missing from, or unknown to, ``args``
    """
    signature = kernel_signatures()[name]
    names = [n for _, n in signature]
    args = dict(args)
    if sweep is not None:
        args[sweep[0]] = 0  # set per launch
    missing, unknown = set(names) - set(args), set(args) - set(names)
    if missing or unknown:
        raise TypeError(f"{name}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    swept = -1 if sweep is None else names.index(sweep[0])
    return [(kind, args[n]) for kind, n in signature], swept


def data_ptr(value) -> int:
    """Device or host address of a contiguous tensor; 0 for ``None``."""
    if value is None:
        return 0
    if not value.is_contiguous():
        raise ValueError("the fused kernels take contiguous tensors")
    return value.data_ptr()
