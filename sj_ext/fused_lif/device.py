"""Launching the fused kernels on a GPU: NVRTC through CuPy, on torch's current stream.

CuPy is imported on first use only, so models with ``backend='cupy'`` can be
built (and saved, moved) on a machine without it. Tensors stay torch's: the
kernels receive their device addresses (``Tensor.data_ptr()``), so nothing
is copied or converted, and every launch goes on the stream torch is using
(``torch.cuda.current_stream``), in order with the surrounding torch ops.
The fused operators name a launcher by a key (:func:`register_launcher`);
the default one is made where its first kernel runs.
"""

from functools import cache

import numpy as np
import torch

from .source import KernelConfig, acc_dtype, data_ptr, kernel_source, ordered_args

__all__ = [
    "CUDA_LAUNCHER",
    "CupyLauncher",
    "INSTALL_HINT",
    "launcher_of",
    "register_launcher",
    "require_cuda_launcher",
]

#: the CuPy wheel to install, by torch's CUDA major
INSTALL_HINT = (
    "pip install cupy-cuda13x (CUDA 13 builds of torch) or pip install cupy-cuda12x (CUDA 12)"
)
#: NVRTC options: no FMA contraction, so every op rounds as the torch reference's ops do
NVRTC_OPTIONS = ("-std=c++17", "--fmad=false")


class CupyLauncher:
    """Compile (once per :class:`~sj_ext.fused_lif.source.KernelConfig` and device) and launch.

    :param block: threads per block (a power of two <= 256)
    :param blocks_per_sm: grid cap per multiprocessor; the grid-stride loops cover the rest
    """

    def __init__(self, block: int = 256, blocks_per_sm: int = 32):
        import cupy

        self._cupy = cupy
        self.block = block
        self.blocks_per_sm = blocks_per_sm
        self._modules = {}
        self._streams = {}
        self.key = register_launcher(self)

    def grid(self, items: int, device: torch.device) -> int:
        """Blocks for ``items`` chains: one chain per thread, capped by the device's size."""
        sms = torch.cuda.get_device_properties(device).multi_processor_count
        return max(1, min(-(-items // self.block), self.blocks_per_sm * sms))

    def _kernel(self, config: KernelConfig, name: str, device_index: int):
        key = (config, device_index)
        if key not in self._modules:
            self._modules[key] = self._cupy.RawModule(
                code=kernel_source(), options=(*NVRTC_OPTIONS, *config.defines())
            )
        return self._modules[key].get_function(name)

    def _stream(self, device: torch.device):
        stream = torch.cuda.current_stream(device)
        key = (device.index, stream.cuda_stream)
        if key not in self._streams:
            from_external = getattr(self._cupy.cuda.Stream, "from_external", None)
            self._streams[key] = (
                from_external(stream)
                if from_external is not None  # CuPy >= 14
                else self._cupy.cuda.ExternalStream(stream.cuda_stream, device.index)
            )
        return self._streams[key]

    def __call__(self, config: KernelConfig, name: str, blocks: int, device, sweep=None, **args):
        """Launch kernel ``name`` on ``blocks`` blocks of :attr:`block` threads, asynchronously.

        :param sweep: ``(parameter, values)``: one launch per value, in order (the
            other arguments are packed once)
        """
        acc = np.float64 if acc_dtype(config.dtype) == torch.float64 else np.float32
        kinds = {"ptr": lambda v: np.uint64(data_ptr(v)), "int": np.int32, "int64": np.int64}
        kinds["acc"] = acc
        ordered, swept = ordered_args(name, args, sweep)
        values = [kinds[kind](v) for kind, v in ordered]
        with self._cupy.cuda.Device(device.index):
            kernel = self._kernel(config, name, device.index)
            with self._stream(device):
                for value in [None] if sweep is None else sweep[1]:
                    if sweep is not None:
                        values[swept] = kinds[ordered[swept][0]](value)
                    kernel((blocks,), (self.block,), tuple(values))


#: the key of the default GPU launcher (:func:`launcher_of`), made on the first launch
CUDA_LAUNCHER = 0
_LAUNCHERS: list = [None]  # by key; few, and as long-lived as the process


def register_launcher(launcher) -> int:
    """The key naming ``launcher`` in the fused operators' arguments (numbers, not objects).

    Every launcher registers itself when made (:class:`CupyLauncher`,
    :class:`~sj_ext.fused_lif.host.HostLauncher`) and keeps its key as ``key``.
    Keys, not objects, reach the operators, so that ``torch.compile`` traces
    only numbers, and a launcher is looked up where a kernel runs.
    """
    _LAUNCHERS.append(launcher)
    return len(_LAUNCHERS) - 1


def launcher_of(key: int):
    """The launcher registered under ``key``; :data:`CUDA_LAUNCHER`: the default one."""
    return _default_launcher() if key == CUDA_LAUNCHER else _LAUNCHERS[key]


@cache
def _default_launcher() -> CupyLauncher:
    return CupyLauncher()


def require_cuda_launcher(x: torch.Tensor) -> int:
    """The key of the GPU launcher for input ``x``, or a ``RuntimeError`` saying what is missing.

    ``backend='cupy'`` needs CuPy (the install extra) and ``x`` on a CUDA device.
    The launcher itself is made on the first launch (:func:`launcher_of`).
    """
    try:
        import cupy  # noqa: F401
    except ImportError as error:
        raise RuntimeError(f"backend='cupy' needs CuPy: {INSTALL_HINT}") from error
    if not x.is_cuda:
        raise RuntimeError(
            f"backend='cupy' runs on CUDA tensors, got an input on {x.device}: move the model "
            "and its inputs to a GPU, or switch it to the torch backend with "
            "sj_ext.neuron.set_backend(net, 'torch')"
        )
    return CUDA_LAUNCHER
