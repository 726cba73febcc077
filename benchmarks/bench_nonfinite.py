"""Cost of the engine's per-step non-finite check, against the training step it guards.

    OMP_NUM_THREADS=1 python benchmarks/bench_nonfinite.py [--device cpu] [--steps 20]
        [--warmup 3] [--checks 200] [--cases quickstart plif_mnist16]
        [--out benchmarks/results] [--tag cpu-2core]

After every optimizer step the engine checks that no parameter or buffer of the
model and loss holds NaN or inf (``sj_ext.app.engine.guards.check_step``: the
largest magnitude of every tensor in one reduction, one sync). Each case builds
a recipe's model, loss and optimizer (``build_run``; the shipped digits stand in
for the dataset, the inputs are random of the case's shape) and times:

* ``step_ms``: one training step as the engine takes it (forward over T steps,
  the recipe's loss, backward, optimizer step, ``reset_net``), median over ``--steps``;
* ``checked_step_ms``: the same step followed by the check (median; the two kinds of
  step alternate, each first every other time, so both see the same machine load);
* ``check_ms``: the check alone, median over ``--checks`` calls;
* ``overhead_pct``: ``100 * check_ms / step_ms``; ``measured_overhead_pct``: ``100 *
  (checked_step_ms - step_ms) / step_ms``: on a GPU it includes the sync the check adds;
  on a busy CPU it is noise (the same step timed twice so differed by 2-11% here).

Cases: ``quickstart`` (recipes/digits_quickstart.yaml: small_cnn, 8x8 images, T=4,
batch 64), ``plif_mnist16`` (the PLIF MNIST net at 16 channels, T=4, batch 32: the
CL-SNN network of the claims study, whose 1.6M-parameter FC layer makes the check
relatively dearest), ``resnet19`` (DS-ATGO's CIFAR ResNet19, T=2, batch 64; a GPU
case). Writes ``<out>/nonfinite_check_<tag or device>.json`` (with the machine's load
average before and after) and prints a table.
"""

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from spikingjelly.activation_based import functional

from sj_ext.app.engine.build import build_run
from sj_ext.app.engine.distributed import DistInfo
from sj_ext.app.engine.guards import check_step
from sj_ext.app.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
ON_DIGITS = ["data.name=digits", "data.root=null", "data.args={}"]
#: case -> (recipe, overrides, input shape per time step)
CASES = {
    "quickstart": ("digits_quickstart.yaml", [], (1, 8, 8)),
    "plif_mnist16": (
        "clsnn_mnist.yaml",
        [*ON_DIGITS, "data.T=4", "data.batch_size=32", "model.args={variant: mnist, channels: 16}"],
        (1, 28, 28),
    ),
    "resnet19": ("dsatgo_cifar10.yaml", [*ON_DIGITS, "data.batch_size=64"], (1, 32, 32)),
}


def build_case(name: str, device: str):
    """The run, a training step and the check, for one case."""
    recipe_file, overrides, shape = CASES[name]
    recipe = load_recipe(
        ROOT / "recipes" / recipe_file, [*overrides, f"train.device={device}", "monitor.every=null"]
    )
    torch.manual_seed(0)
    run = build_run(recipe, torch.device(device))
    d = recipe["data"]
    x = torch.rand(d["T"], d["batch_size"], *shape, device=device)
    y = torch.randint(0, run.data.num_classes, (d["batch_size"],), device=device)

    def step():
        loss = run.loss(run.model(x), y)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        functional.reset_net(run.model)

    def check():
        check_step(run, DistInfo(), torch.device(device), "the benchmark")

    return run, step, check


def timed(fn, device: str) -> float:
    """Milliseconds ``fn`` takes, the device's queue drained before and after."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - start)


def run_case(name: str, args) -> dict:
    run, step, check = build_case(name, args.device)
    for _ in range(args.warmup):
        step()
        check()
    kinds = {"plain": (step, []), "checked": (lambda: (step(), check()), [])}
    for i in range(args.steps):  # in turns, each kind first every other time
        for fn, times in list(kinds.values())[:: 1 if i % 2 else -1]:
            times.append(timed(fn, args.device))
    plain, checked = (times for _, times in kinds.values())
    alone = [timed(check, args.device) for _ in range(args.checks)]
    step_ms, checked_ms, check_ms = map(statistics.median, (plain, checked, alone))
    tensors = [*run.model.state_dict().values(), *run.loss.state_dict().values()]
    return {
        "case": name,
        "tensors": len(tensors),
        "values": sum(t.numel() for t in tensors),
        "step_ms": step_ms,
        "checked_step_ms": checked_ms,
        "check_ms": check_ms,
        "overhead_pct": 100 * check_ms / step_ms,
        "measured_overhead_pct": 100 * (checked_ms - step_ms) / step_ms,
    }


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=20, help="timed steps of each kind per case")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--checks", type=int, default=200, help="timed calls of the check alone")
    p.add_argument(
        "--cases", nargs="+", choices=list(CASES), help="default: all but resnet19 on a CPU"
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--tag", help="file name tag (default: the device type)")
    return p.parse_args()


def main():
    args = parse_args()
    cases = args.cases or [c for c in CASES if args.device == "cuda" or c != "resnet19"]
    load_before = os.getloadavg()
    rows = [run_case(name, args) for name in cases]
    device = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"CPU {platform.machine()} ({torch.get_num_threads()} threads)"
    )
    result = {
        "device": device,
        "torch": torch.__version__,
        "steps": args.steps,
        "checks": args.checks,
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "rows": rows,
    }
    out = Path(args.out) / f"nonfinite_check_{args.tag or args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{device}, torch {torch.__version__}")
    header = ("case", "values", "step ms", "check ms", "check %", "measured %")
    print("{:14} {:>10} {:>9} {:>9} {:>8} {:>10}".format(*header))
    for r in rows:
        print(
            f"{r['case']:14} {r['values']:>10} {r['step_ms']:>9.2f} {r['check_ms']:>9.3f} "
            f"{r['overhead_pct']:>8.2f} {r['measured_overhead_pct']:>10.2f}"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
