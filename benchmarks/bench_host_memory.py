"""Seconds per CPU training step with and without the engine's allocator setting, NCHW and NHWC.

    python benchmarks/bench_host_memory.py [--recipe recipes/clsnn_mnist_cpu.yaml]
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

CASE = """
import json, resource, sys, time, torch
from spikingjelly.activation_based import functional
from sj_ext.app.engine.build import build_run, time_major_input
from sj_ext.app.engine.host_memory import keep_freed_memory
from sj_ext.app.recipe import load_recipe
recipe_path, keep, channels_last, steps = sys.argv[1:5]
if keep == "1":
    assert keep_freed_memory()
recipe = load_recipe(recipe_path, [f"train.channels_last={channels_last}"])
torch.manual_seed(0)
run = build_run(recipe, torch.device("cpu"))
run.model.train()
d = recipe["data"]
x = torch.rand(d["batch_size"], run.data.in_channels, 28, 28)
y = torch.randint(0, run.data.num_classes, (d["batch_size"],))
def step():
    loss = run.loss(run.model(time_major_input(x, recipe, run.data)), y)
    run.optimizer.zero_grad()
    loss.backward()
    run.optimizer.step()
    functional.reset_net(run.model)
for _ in range(3):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
start = time.perf_counter()
for _ in range(int(steps)):
    step()
seconds = (time.perf_counter() - start) / int(steps)
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / int(steps)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds_per_step": seconds, "faults_per_step": faults, "peak_mb": peak}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/clsnn_mnist_cpu.yaml")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/host_memory_cpu.json"))
    args = parser.parse_args(argv)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    cases = []
    for keep in (False, True):
        for channels_last in (False, True):
            command = [
                sys.executable,
                "-c",
                CASE,
                args.recipe,
                str(int(keep)),
                str(channels_last).lower(),
                str(args.steps),
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
