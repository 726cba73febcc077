"""The headline figure: CL-SNN on the whole real MNIST with the recipe narrowed for a 2-core CPU.

    python benchmarks/clsnn_mnist_cpu.py [--seeds 0 1 2] [--threads 2]
    python benchmarks/clsnn_mnist_cpu.py --summarise --runs runs/headline runs/headline_seed1
    python benchmarks/clsnn_mnist_cpu.py --seeds 1 --add
    python benchmarks/clsnn_mnist_cpu.py --recipe recipes/clsnn_mnist_cpu_plif.yaml

Trains ``recipes/clsnn_mnist_cpu.yaml`` (or ``--recipe``, a recipe ``NAME.yaml``) once
per seed with ``sj-ext train --set seed=S`` into ``runs/NAME/seed<S>`` (the data first:
``python -m sj_ext data mnist --root data``), one run after the other, or, with
``--summarise``, reads run folders that have finished (``--runs``; each run's seed is
its recipe's). Writes ``benchmarks/results/NAME.json`` (or ``--out``): per run, the
seed, the final test accuracy (the test set read by the last epoch's evaluation; the
per-epoch figures are the engine's log), the accuracy per class, the images trained and
tested, each epoch's seconds and their sum (the run's time, whatever its resumes), and its
wall time from the run folder's first file (``recipe.yaml``) to its last (``metrics.json``),
``None`` for a run that was resumed (a resume writes ``recipe.yaml`` again; its
``environment.json`` lists the resumes); over the runs, the mean, sample standard deviation,
least and most of the final test accuracy, of the epochs' minutes and of the wall time. With
``--add``, the runs already in that file are kept, except those of a seed read again, so
that seeds trained on different days (or machines, whose run folders are gone) are
summarised together.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "recipes/clsnn_mnist_cpu.yaml"


def summary(run: Path) -> dict:
    """The headline numbers of a finished run folder."""
    metrics = json.loads((run / "metrics.json").read_text())
    epochs = metrics["epochs"]
    wall = (run / "metrics.json").stat().st_mtime - (run / "recipe.yaml").stat().st_mtime
    resumed = json.loads((run / "environment.json").read_text()).get("resumed", [])
    return {
        "run": str(run.relative_to(ROOT) if run.is_relative_to(ROOT) else run),
        "seed": yaml.safe_load((run / "recipe.yaml").read_text())["seed"],
        "final_test_acc": metrics["final_test_acc"],
        "final_per_class_acc": metrics["final_per_class_acc"],
        "epochs": len(epochs),
        "train_images_per_epoch": epochs[-1]["train_samples"],
        "test_images": epochs[-1]["test_samples"],
        "test_acc_per_epoch": [e["test_acc"] for e in epochs],
        "seconds_per_epoch": [round(e["seconds"], 1) for e in epochs],
        "epoch_minutes": round(sum(e["seconds"] for e in epochs) / 60, 1),
        "resumes": len(resumed),
        "wall_minutes": None if resumed else round(wall / 60, 1),
    }


def spread(values: list[float]) -> dict | None:
    """Mean, sample standard deviation (None for one value), least and most; None for none."""
    if not values:
        return None
    sd = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "sd": sd, "min": min(values), "max": max(values)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=RECIPE, help=f"recipe to train (default {RECIPE})")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to train")
    parser.add_argument("--runs", nargs="+", help="run folders (default: one per seed)")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the runs")
    parser.add_argument("--summarise", action="store_true", help="read finished runs only")
    parser.add_argument("--add", action="store_true", help="keep the results file's other seeds")
    parser.add_argument("--out", help="results file (default benchmarks/results/NAME.json)")
    args = parser.parse_args(argv)
    name = Path(args.recipe).stem
    out = Path(args.out or ROOT / f"benchmarks/results/{name}.json")
    runs = [ROOT / r for r in args.runs or [f"runs/{name}/seed{s}" for s in args.seeds]]
    if not args.summarise:
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        for seed, run in zip(args.seeds, runs, strict=True):
            command = [
                sys.executable,
                "-m",
                "sj_ext",
                "train",
                args.recipe,
                "--set",
                f"seed={seed}",
            ]
            subprocess.run([*command, "--out", str(run)], check=True, env=env, cwd=ROOT)
    rows = [summary(run) for run in runs]
    if args.add and out.exists():
        seeds = {r["seed"] for r in rows}
        kept = [r for r in json.loads(out.read_text())["runs"] if r["seed"] not in seeds]
        rows = sorted(kept + rows, key=lambda r: r["seed"])
    result = {
        "recipe": args.recipe,
        "cpu": f"{os.cpu_count()} cores, {platform.machine()}",
        "threads": args.threads,
        "final_test_acc": spread([r["final_test_acc"] for r in rows]),
        "epoch_minutes": spread([r["epoch_minutes"] for r in rows if "epoch_minutes" in r]),
        "wall_minutes": spread([r["wall_minutes"] for r in rows if r["wall_minutes"] is not None]),
        "runs": rows,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    for r in rows:
        print(
            f"seed {r['seed']}: final test accuracy {100 * r['final_test_acc']:.2f}% after "
            f"{r['epochs']} epochs of {r['train_images_per_epoch']} images, "
            f"{r.get('epoch_minutes')} min of epochs, "
            + ("resumed" if r["wall_minutes"] is None else f"{r['wall_minutes']} min wall")
        )
    acc = result["final_test_acc"]
    sd = "" if acc["sd"] is None else f" ± {100 * acc['sd']:.2f}"
    print(
        f"{args.recipe}: {100 * acc['mean']:.2f}%{sd} over {len(rows)} seed(s), on {result['cpu']} "
        f"({args.threads} threads); epochs {result['epoch_minutes']['max']} min at most"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
