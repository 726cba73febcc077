"""Fused CuPy kernels (``backend='cupy'``) vs the torch backend, beside SpikingJelly's LIFNode.

    python benchmarks/bench_kernels.py [--T 4 8 16] [--neurons 1.05M 4.19M] [--suites ...]
        [--dtype float32] [--repeat 10] [--out benchmarks/results]

Needs a CUDA GPU and CuPy (``pip install -e ".[cupy-cuda13]"``); exits with a
message otherwise. Multi-step (input ``[T, N, C, H, W]``, ``1.05M`` = 32x32x32x32
and ``4.19M`` = 64x64x32x32 neurons: labels are computed from the shapes),
forward + backward of ``sum(spikes * g)``
with a fixed random ``g``. Suites, each with SpikingJelly 2.0's own
``LIFNode`` beside the sj_ext neuron on both backends:

* ``lif``: ``AdaptiveThresholdLIF(threshold='fixed')`` with SpikingJelly's
  ``Sigmoid`` (LIFNode's maths; the single-launch ``sj_lif_loop`` kernel);
* ``adaptive``: DS-ATGO's ``AdaptiveThresholdLIF`` (training mode, layer
  statistics every step, ``DynamicRect``; ``sj_lif_step`` per step), beside
  ``LIFNode`` with ``Rect``;
* ``dilated``: ``DilatedWindowLIF`` (2x2 dilated groups, sine projection,
  ``Sigmoid``).

Per row: ``fwd_bwd_ms`` (median over ``--repeat`` passes after warm-up, CUDA
events), ``peak_mem_mb`` (``max_memory_allocated`` above the allocation
before one pass), ``speedup_vs_torch`` (time of the suite's neuron on the
torch backend / this row's time), and the effective bandwidth: ``bytes`` is
the traffic the fused kernels cannot avoid for the case (forward: read x,
write spikes and h, plus re-reading h_{t-1} when statistics are taken;
backward: read h and the spike gradient, write the input gradient, plus
re-reading h_{t-1} for groups), ``gbs = bytes / time`` and ``bw_fraction =
gbs / peak``; the peak is the device's datasheet figure when its name is in
:data:`PEAK_GBS`, else a device-to-device copy measured here (both are
recorded). Writes ``<out>/bench_kernels_<device>.json`` (after every case:
what ran is kept if the run is stopped).
"""

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

import torch
from spikingjelly.activation_based import functional, neuron, surrogate

from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF, set_backend

#: datasheet memory bandwidth (GB/s) by a substring of the device name (first match wins)
PEAK_GBS = {
    "H200": 4800,
    "H100 SXM": 3350,
    "H100 NVL": 3900,
    "H100 PCIe": 2000,
    "H100": 3350,
    "A100-SXM4-80GB": 2039,
    "A100 80GB PCIe": 1935,
    "A100": 1555,
    "L40S": 864,
    "L4": 300,
    "A10": 600,
    "RTX 4090": 1008,
    "RTX 3090": 936,
    "V100": 900,
}


def shape_label(shape) -> str:
    """Neurons per step of ``shape`` in millions (3 digits): ``(64, 64, 32, 32)`` -> ``'4.19M'``."""
    return f"{torch.Size(shape).numel() / 1e6:.3g}M"


#: per-step shapes [N, C, H, W], by their label
SHAPES = {shape_label(s): s for s in ((32, 32, 32, 32), (64, 64, 32, 32))}


def build(suite: str, impl: str):
    """``impl``: 'sj' (SpikingJelly's LIFNode) or an sj_ext backend ('torch', 'cupy')."""
    if impl == "sj":
        sg = surrogate.Rect() if suite == "adaptive" else surrogate.Sigmoid()
        return neuron.LIFNode(tau=2.0, surrogate_function=sg, step_mode="m")
    if suite == "lif":
        node = AdaptiveThresholdLIF(threshold="fixed", surrogate_function=surrogate.Sigmoid())
    elif suite == "adaptive":
        node = AdaptiveThresholdLIF()
    else:
        node = DilatedWindowLIF(groups=(2, 2), window="dilated", projection="sine")
    functional.set_step_mode(node, "m")
    set_backend(node, impl)
    return node


def fused_bytes(suite: str, steps: int, neurons: int, element: int) -> int:
    """The fused kernels' compulsory traffic for one forward + backward (see the docstring)."""
    forward = 3 + (suite == "adaptive")
    backward = 3 + (suite == "dilated")
    return (forward + backward) * steps * neurons * element


def copy_gbs(device) -> float:
    """Device-to-device copy bandwidth (read + write), GB/s, best of a few 1 GiB copies."""
    src = torch.empty(1 << 28, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return 2 * src.numel() * src.element_size() / best / 1e9


def run_case(suite, impl, steps, shape, dtype, repeat, device) -> dict:
    torch.manual_seed(0)
    node = build(suite, impl).to(device=device, dtype=dtype)
    x = torch.randn(steps, *shape, device=device, dtype=dtype, requires_grad=True)
    g = torch.randn(steps, *shape, device=device, dtype=dtype)

    def once() -> float:
        functional.reset_net(node)
        x.grad = None
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        node(x).backward(g)
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    once(), once()  # compile, warm up
    ms = statistics.median(once() for _ in range(repeat))
    x.grad = None
    functional.reset_net(node)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    once()
    peak = torch.cuda.max_memory_allocated() - base
    return {"fwd_bwd_ms": ms, "peak_mem_mb": peak / 2**20}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--neurons", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--suites", nargs="+", default=["lif", "adaptive", "dilated"])
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--out", default=str(Path(__file__).with_name("results")))
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_kernels: no CUDA device here; the fused kernels run on a GPU only")
    try:
        import cupy  # noqa: F401
    except ImportError:
        sys.exit('bench_kernels: CuPy is missing: pip install -e ".[cupy-cuda13]" (or cupy-cuda12)')

    device = torch.device("cuda")
    name = torch.cuda.get_device_name(device)
    dtype = getattr(torch, args.dtype)
    measured = copy_gbs(device)
    table = next((gbs for key, gbs in PEAK_GBS.items() if key in name), None)
    peak = table or measured
    print(f"{name}: peak {peak:.0f} GB/s ({'datasheet' if table else 'copy'}), copy {measured:.0f}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench_kernels_{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_')}.json"
    meta = {
        "device": name,
        "torch": torch.__version__,
        "peak_gbs": peak,
        "peak_source": "datasheet" if table else "copy",
        "copy_gbs": measured,
    }
    rows = []
    for suite in args.suites:
        for label in args.neurons:
            shape = SHAPES[label]
            neurons = torch.Size(shape).numel()
            for steps in args.T:
                case = {}
                for impl in ("torch", "cupy", "sj"):
                    case[impl] = run_case(suite, impl, steps, shape, dtype, args.repeat, device)
                    torch.cuda.empty_cache()
                traffic = fused_bytes(suite, steps, neurons, dtype.itemsize)
                for impl, result in case.items():
                    gbs = traffic / (result["fwd_bwd_ms"] / 1e3) / 1e9
                    row = {
                        "suite": suite,
                        "neuron": "sj.LIFNode" if impl == "sj" else f"sj_ext/{impl}",
                        "T": steps,
                        "neurons": neurons,
                        "shape": list(shape),
                        "dtype": args.dtype,
                        **result,
                        "speedup_vs_torch": case["torch"]["fwd_bwd_ms"] / result["fwd_bwd_ms"],
                        "bytes": traffic,
                        "gbs": gbs,
                        "bw_fraction": gbs / peak,
                    }
                    rows.append(row)
                    print(
                        f"{suite:9s} T={steps:<3d} {label:5s} {row['neuron']:12s} "
                        f"{row['fwd_bwd_ms']:9.3f} ms  x{row['speedup_vs_torch']:6.2f} vs torch  "
                        f"{row['peak_mem_mb']:9.1f} MiB  {gbs:7.0f} GB/s "
                        f"({100 * row['bw_fraction']:.0f}% of peak)",
                        flush=True,
                    )
                path.write_text(json.dumps({**meta, "rows": rows}, indent=1))  # kept if stopped
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
