"""Forward+backward time and peak memory of sj_ext neurons beside SpikingJelly's LIFNode.

    python benchmarks/bench_neurons.py --suite adaptive|dilated [--T ...] [--shape N ...]
        [--groups 2 2] [--projection sine] [--threads 1] [--device cpu cuda] [--json OUT]

Suites (multi-step, input ``[T, *shape]``, default ``shape`` 32x32x32x32 = 1M neurons):

* ``adaptive`` (T 4, 8): ``AdaptiveThresholdLIF`` (torch backend, its default
  ``DynamicRect`` surrogate) vs ``LIFNode`` with SpikingJelly's ``Rect``.
* ``dilated`` (T 1, 4): ``DilatedWindowLIF`` with ``window='block'`` and
  ``'dilated'`` (grid ``--groups`` over the last two dims, ``--projection``) vs
  ``LIFNode``, all with SpikingJelly's ``Sigmoid``.

Every case runs twice, each time in a fresh subprocess:

* time: the median over ``--repeat`` forward+backward passes after two warm-up passes;
* memory: what one pass adds on top of the inputs, measured after a warm-up pass
  (one-time initialisation is not counted). On CUDA ``torch.cuda.max_memory_allocated``
  above the allocation before the pass. On CPU the peak resident set (``VmHWM``,
  reset through ``/proc/self/clear_refs``) above the resident set before the pass,
  with glibc told to return every block of 64 KiB or more to the system when freed
  (``MALLOC_MMAP_THRESHOLD_``), so the resident set follows the live tensors.

``--threads N`` sets ``torch.set_num_threads`` in every case (0: torch's default);
on a shared machine ``--threads 1`` keeps OpenMP threads from spinning against
other processes.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from spikingjelly.activation_based import functional, neuron, surrogate

from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF

SUITES = {
    "adaptive": {"T": [4, 8], "cases": ["sj.LIFNode/rect", "AdaptiveThresholdLIF"]},
    "dilated": {
        "T": [1, 4],
        "cases": ["sj.LIFNode/sigmoid", "DilatedWindowLIF/block", "DilatedWindowLIF/dilated"],
    },
}


def build(name: str, args):
    if name == "sj.LIFNode/rect":
        return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.Rect(), step_mode="m")
    if name == "sj.LIFNode/sigmoid":
        return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.Sigmoid(), step_mode="m")
    if name == "AdaptiveThresholdLIF":
        return AdaptiveThresholdLIF(tau=2.0, step_mode="m")
    if name.startswith("DilatedWindowLIF/"):
        return DilatedWindowLIF(
            tau=2.0,
            groups=tuple(args.groups),
            window=name.split("/")[1],
            projection=args.projection,
            surrogate_function=surrogate.Sigmoid(),
            step_mode="m",
        )
    raise ValueError(name)


def proc_status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def run_case(name: str, T: int, device: str, measure: str, args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    node = build(name, args).to(device)
    x = torch.randn(T, *args.shape, device=device, requires_grad=True)
    grad = torch.randn(T, *args.shape, device=device)

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

    once(), once()  # warm-up
    x.grad = None
    functional.reset_net(node)
    if measure == "time":
        return {"fwd_bwd_ms": 1e3 * statistics.median(once() for _ in range(args.repeat))}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set to the current one
        base = proc_status_bytes("VmRSS")
    once()
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = proc_status_bytes("VmHWM") - base
    return {
        "peak_mem_mb": peak / 2**20,
        "neurons": x[0].numel(),
        "threads": torch.get_num_threads(),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", choices=sorted(SUITES), required=True)
    p.add_argument("--T", type=int, nargs="+", help="default: the suite's")
    p.add_argument("--shape", type=int, nargs="+", default=[32, 32, 32, 32], help="[N, *]")
    p.add_argument("--groups", type=int, nargs=2, default=[2, 2])
    p.add_argument("--projection", default="sine", choices=["sine", "add", "none"])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument("--device", nargs="+", default=None)
    p.add_argument("--json", help="write the rows to this file")
    p.add_argument("--case", nargs=4, help=argparse.SUPPRESS)  # name T device measure
    args = p.parse_args()
    if args.case:
        name, T, device, measure = args.case
        print(json.dumps(run_case(name, int(T), device, measure, args)))
        return
    suite = SUITES[args.suite]
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    passed = [
        "--suite",
        args.suite,
        "--shape",
        *map(str, args.shape),
        "--repeat",
        str(args.repeat),
        "--groups",
        *map(str, args.groups),
        "--projection",
        args.projection,
        "--threads",
        str(args.threads),
    ]
    rows = []
    for device in devices:
        for T in args.T or suite["T"]:
            ref = None
            for name in suite["cases"]:
                row = {"neuron": name, "device": device, "T": T}
                for measure in ("time", "memory"):
                    cmd = [
                        sys.executable,
                        __file__,
                        *passed,
                        "--case",
                        name,
                        str(T),
                        device,
                        measure,
                    ]
                    env = dict(os.environ)
                    if measure == "memory" and device == "cpu":
                        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
                    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
                    row.update(json.loads(out.stdout.strip().splitlines()[-1]))
                ref = ref or row["fwd_bwd_ms"]
                row["ratio_vs_lifnode"] = row["fwd_bwd_ms"] / ref
                rows.append(row)
                print(
                    f"{device:5s} T={T:<3d} {row['neurons']:>9d} neurons  {name:26s} "
                    f"fwd+bwd {row['fwd_bwd_ms']:9.2f} ms  x{row['ratio_vs_lifnode']:.2f}  "
                    f"peak +{row['peak_mem_mb']:8.1f} MiB",
                    flush=True,
                )
    if args.json:
        with open(args.json, "w") as f:
            meta = {"torch": torch.__version__, "suite": args.suite, "threads": args.threads}
            json.dump({**meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
