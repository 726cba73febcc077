"""Forward+backward time and peak memory: AdaptiveThresholdLIF (torch backend) vs LIFNode.

    python benchmarks/bench_adaptive_lif.py [--T 4 8] [--shape 32 32 32 32] [--json OUT]

Each case runs in a fresh subprocess. Peak memory is what the passes add on
top of the inputs: on CPU the peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs``) above the resident set before the first pass; on
CUDA ``torch.cuda.max_memory_allocated`` above the allocation before it.
Times are medians over ``--repeat`` passes after two warm-up passes.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
from spikingjelly.activation_based import functional, neuron, surrogate

from sj_ext.neuron import AdaptiveThresholdLIF
from sj_ext.surrogate import DynamicRect


def build(name: str):
    if name == "sj.LIFNode":
        return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.Rect(), step_mode="m")
    if name == "AdaptiveThresholdLIF":
        return AdaptiveThresholdLIF(tau=2.0, surrogate_function=DynamicRect(), step_mode="m")
    raise ValueError(name)


def proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def run_case(name: str, T: int, shape: list[int], device: str, repeat: int) -> dict:
    torch.manual_seed(0)
    node = build(name).to(device)
    x = torch.randn(T, *shape, device=device, requires_grad=True)
    grad = torch.randn(T, *shape, device=device)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def once():
        functional.reset_net(node)
        x.grad = None
        sync()
        start = time.perf_counter()
        node(x).backward(grad)
        sync()
        return time.perf_counter() - start

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set to the current one
        base = proc_status_bytes("VmRSS")
    once(), once()  # warm-up
    times = [once() for _ in range(repeat)]
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = proc_status_bytes("VmHWM") - base
    return {
        "neuron": name,
        "device": device,
        "T": T,
        "neurons": x[0].numel(),
        "fwd_bwd_ms": 1e3 * statistics.median(times),
        "peak_mem_mb": peak / 2**20,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, nargs="+", default=[4, 8])
    p.add_argument("--shape", type=int, nargs="+", default=[32, 32, 32, 32], help="[N, *]")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--device", nargs="+", default=None)
    p.add_argument("--json", help="write the rows to this file")
    p.add_argument("--case", nargs=3, help=argparse.SUPPRESS)  # name T device: one subprocess
    args = p.parse_args()
    if args.case:
        name, T, device = args.case
        print(json.dumps(run_case(name, int(T), args.shape, device, args.repeat)))
        return
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    for device in devices:
        for T in args.T:
            ref = None
            for name in ("sj.LIFNode", "AdaptiveThresholdLIF"):
                cmd = [sys.executable, __file__, "--case", name, str(T), device]
                cmd += ["--shape", *map(str, args.shape), "--repeat", str(args.repeat)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                row = json.loads(out.strip().splitlines()[-1])
                ref = ref or row["fwd_bwd_ms"]
                row["ratio_vs_lifnode"] = row["fwd_bwd_ms"] / ref
                rows.append(row)
                print(
                    f"{device:5s} T={T:<3d} {row['neurons']:>9d} neurons  {name:22s} "
                    f"fwd+bwd {row['fwd_bwd_ms']:9.2f} ms  x{row['ratio_vs_lifnode']:.2f}  "
                    f"peak +{row['peak_mem_mb']:8.1f} MiB",
                    flush=True,
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
