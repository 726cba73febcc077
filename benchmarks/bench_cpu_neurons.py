"""The fused CPU backend against the torch path, SpikingJelly's nodes and torch.compile, on a CPU.

    python benchmarks/bench_cpu_neurons.py [--threads 2] [--rounds 7] [--compiled]
        [--json benchmarks/results/cpu_neurons_2core.json]

Forward + backward (``node(x).backward(grad)``, ``grad`` a fixed random tensor)
of every case on the same input, at 1M neurons x T = 8 and at the layer shapes
of the CPU CL-SNN headline (``recipes/clsnn_mnist_cpu.yaml``: T = 4, batch 64,
64 channels, channels-last, 28 x 28 and 14 x 14). The cases run *interleaved*:
each round runs every case once, in turn, and a case's figure is its least
time over the rounds, so a noisy machine slows every case alike and the
ratios stay fair. Beside them, the machine's memory bandwidth (the least time
of copying a 256 MiB tensor) and the least time any fused neuron could take at
that bandwidth: forward and backward together move six values per neuron and
step (read x, write the spikes and h; read h and the incoming gradient, write
the input's gradient). As ``sj-ext train`` does on a CPU, freed blocks stay in
the process (``keep_freed_memory``), so that no case pays for page faults of
fresh output buffers (``--fresh-pages``: glibc's default, every large buffer
faulted in anew).

Cases (``--compiled`` adds ``torch.compile`` of the torch path, inductor, its
compile time left out):

* ``sj.LIFNode``: SpikingJelly 2.0's LIFNode (``Rect``; ``/sigmoid``: ``Sigmoid``,
  the surrogate of the ``DilatedWindowLIF`` cases), its CPU path;
* ``sj.ParametricLIFNode``: the headline's neuron (``ATan(2)``, hard reset to 0,
  detached reset, learnable tau);
* ``AdaptiveThresholdLIF`` (DS-ATGO, dynamic ``Rect``), torch and cpu backends;
* ``DilatedWindowLIF(projection='none')``, torch and cpu backends;
* ``PLIF-equivalent``: ``AdaptiveThresholdLIF(threshold='fixed', learnable_tau=True)``
  with the headline's options, cpu backend (equal to ``sj.ParametricLIFNode``:
  tests/test_fused_lif_cpu.py).
"""

import argparse
import json
import os
import platform
import time

import torch
from spikingjelly.activation_based import functional, neuron, surrogate

from sj_ext.app.engine.host_memory import keep_freed_memory
from sj_ext.models.layout import to_channels_last
from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF

SHAPES = {  # name: (T, per-step shape, channels-last)
    "1M x T=8": (8, (32, 32, 32, 32), False),
    "headline conv1": (4, (64, 64, 28, 28), True),
    "headline conv2": (4, (64, 64, 14, 14), True),
}
PLIF = dict(decay_input=True, v_reset=0.0, detach_reset=True, step_mode="m")


def cases(compiled: bool) -> dict:
    """``{name: () -> node}``."""
    made = {
        "sj.LIFNode": lambda: neuron.LIFNode(
            tau=2.0, surrogate_function=surrogate.Rect(), step_mode="m"
        ),
        "sj.LIFNode/sigmoid": lambda: neuron.LIFNode(
            tau=2.0, surrogate_function=surrogate.Sigmoid(), step_mode="m"
        ),
        "sj.ParametricLIFNode": lambda: neuron.ParametricLIFNode(
            init_tau=2.0, surrogate_function=surrogate.ATan(alpha=2.0), **PLIF
        ),
    }
    for backend in ("torch", "cpu"):
        made[f"AdaptiveThresholdLIF[{backend}]"] = lambda b=backend: AdaptiveThresholdLIF(
            tau=2.0, step_mode="m", backend=b
        )
        made[f"DilatedWindowLIF(none)[{backend}]"] = lambda b=backend: DilatedWindowLIF(
            tau=2.0, projection="none", surrogate_function=surrogate.Sigmoid(), step_mode="m",
            backend=b,
        )  # fmt: skip
    made["PLIF-equivalent[cpu]"] = lambda: AdaptiveThresholdLIF(
        tau=2.0,
        threshold="fixed",
        learnable_tau=True,
        surrogate_function=surrogate.ATan(alpha=2.0),
        backend="cpu",
        **PLIF,
    )
    if compiled:
        made["AdaptiveThresholdLIF[torch, compiled]"] = lambda: torch.compile(
            AdaptiveThresholdLIF(tau=2.0, step_mode="m")
        )
        made["sj.LIFNode[compiled]"] = lambda: torch.compile(made["sj.LIFNode"]())
    return made


def bandwidth_gbs(rounds: int) -> float:
    """Bytes read and written per second by the least of ``rounds`` copies of 256 MiB."""
    src = torch.randn(64 * 2**20)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() * src.element_size() / best / 1e9


def fwd_bwd(node, x, grad) -> float:
    """Seconds of one forward + backward from a reset node."""
    functional.reset_net(node)
    x.grad = None
    start = time.perf_counter()
    node(x).backward(grad)
    return time.perf_counter() - start


def measure(shape_name: str, made: dict, rounds: int, gbs: float) -> list[dict]:
    T, step, channels_last = SHAPES[shape_name]
    torch.manual_seed(0)
    x = torch.randn(T, *step)
    grad = torch.randn(T, *step)
    if channels_last:
        x, grad = to_channels_last(x), to_channels_last(grad)
    x.requires_grad_(True)
    nodes = {name: make() for name, make in made.items()}
    for node in nodes.values():  # warm-up: builds, compiles
        fwd_bwd(node, x, grad), fwd_bwd(node, x, grad)
    best = dict.fromkeys(nodes, float("inf"))
    for _ in range(rounds):
        for name, node in nodes.items():
            best[name] = min(best[name], fwd_bwd(node, x, grad))
    neurons = x[0].numel()
    limit_ms = 1e3 * 6 * x.numel() * x.element_size() / (gbs * 1e9)
    rows = []
    for name, seconds in best.items():
        ms = 1e3 * seconds
        rows.append(
            {
                "shape": shape_name,
                "T": T,
                "neurons": neurons,
                "case": name,
                "fwd_bwd_ms": ms,
                "vs_sj_lifnode": ms / (1e3 * best["sj.LIFNode"]),
                "bandwidth_limit_ms": limit_ms,
            }
        )
        print(
            f"{shape_name:15s} {name:38s} {ms:8.1f} ms  x{rows[-1]['vs_sj_lifnode']:.2f} of "
            f"LIFNode  ({ms / limit_ms:.1f}x the bandwidth limit {limit_ms:.1f} ms)",
            flush=True,
        )
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--compiled", action="store_true", help="add torch.compile cases")
    p.add_argument("--fresh-pages", action="store_true", help="glibc's default allocator")
    p.add_argument("--json", help="write the rows to this file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    kept = not args.fresh_pages and keep_freed_memory()
    gbs = bandwidth_gbs(args.rounds)
    print(f"memory bandwidth (256 MiB copy, read + write): {gbs:.1f} GB/s", flush=True)
    made = cases(args.compiled)
    rows = [row for shape in args.shapes for row in measure(shape, made, args.rounds, gbs)]
    if args.json:
        meta = {
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "threads": args.threads,
            "load_average": os.getloadavg(),
            "rounds": args.rounds,
            "bandwidth_gbs": gbs,
            "keep_freed_memory": kept,
        }
        with open(args.json, "w") as f:
            json.dump({**meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
