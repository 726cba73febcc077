"""Seconds per CPU training step with and without the engine's allocator setting, NCHW and NHWC.

    python benchmarks/bench_host_memory.py [--recipe recipes/clsnn_mnist_cpu_plif.yaml]
        [--steps 40] [--threads 2] [--out benchmarks/results/host_memory_cpu.json]

Each case runs in a fresh interpreter: it builds the recipe's model, loss and
optimizer as the engine does (``build_run``), then times ``--steps`` optimizer
steps (forward, loss, backward, step, ``reset_net``) on one fixed random batch of
the recipe's batch size, after 3 untimed ones. The cases: glibc's default
allocator or :func:`sj_ext.app.engine.host_memory.keep_freed_memory` (what
``sj-ext train`` sets on the CPU), each with ``train.channels_last`` false and
true. Per case: the mean seconds per step, the page faults per step and the peak
resident memory (MB). Prints a table and writes the JSON to ``--out``.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_case(recipe: str, keep: bool, channels_last: bool, steps: int) -> dict:
    """Seconds and page faults per step, and peak resident MB, in this interpreter."""
    import resource
    import time

    from bench_recipe_step import build  # this folder: the step as bench_recipe_step times it

    from sj_ext.app.engine.host_memory import keep_freed_memory

    if keep:
        assert keep_freed_memory()
    step = build(recipe, [f"train.channels_last={str(channels_last).lower()}"])
    for _ in range(3):
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds_per_step": seconds, "faults_per_step": faults, "peak_mb": peak}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/clsnn_mnist_cpu_plif.yaml")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/host_memory_cpu.json"))
    parser.add_argument(
        "--case", nargs=2, metavar=("KEEP", "CHANNELS_LAST"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.case:  # one case, in the fresh interpreter main() started for it
        keep, channels_last = (v == "1" for v in args.case)
        print(json.dumps(one_case(args.recipe, keep, channels_last, args.steps)))
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    cases = []
    for keep in (False, True):
        for channels_last in (False, True):
            command = [
                sys.executable,
                __file__,
                *("--recipe", args.recipe, "--steps", str(args.steps)),
                *("--case", str(int(keep)), str(int(channels_last))),
            ]
            out = subprocess.run(
                command, env=env, cwd=ROOT, capture_output=True, text=True, check=True
            )
            case = {
                "keep_freed_memory": keep,
                "channels_last": channels_last,
                **json.loads(out.stdout.splitlines()[-1]),
            }
            cases.append(case)
            print(
                f"keep_freed_memory={keep!s:5} channels_last={channels_last!s:5} "
                f"{case['seconds_per_step']:.3f} s/step  {case['faults_per_step']:.0f} "
                f"faults/step  peak {case['peak_mb']:.0f} MB"
            )
    result = {
        "recipe": args.recipe,
        "cpu": f"{os.cpu_count()} cores, {platform.machine()}",
        "threads": args.threads,
        "steps": args.steps,
        "load_average": os.getloadavg(),
        "cases": cases,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
