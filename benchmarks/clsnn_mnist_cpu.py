"""The headline figure: CL-SNN on the whole real MNIST with the recipe narrowed for a 2-core CPU.

    python benchmarks/clsnn_mnist_cpu.py [--run runs/headline] [--threads 2]
    python benchmarks/clsnn_mnist_cpu.py --run runs/headline --summarise

Trains ``recipes/clsnn_mnist_cpu.yaml`` into ``--run`` with ``sj-ext train`` (the
data first: ``python -m sj_ext data mnist --root data``), or, with ``--summarise``,
reads a run folder that has finished. Writes
``benchmarks/results/clsnn_mnist_cpu.json``: the final test accuracy (the test set
read by the last epoch's evaluation; the per-epoch figures are the engine's
log), the accuracy per class, the images trained and tested, each epoch's
seconds and the run's wall time, from the run folder's first file
(``recipe.yaml``) to its last (``metrics.json``).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "recipes/clsnn_mnist_cpu.yaml"


def summary(run: Path) -> dict:
    """The headline numbers of a finished run folder."""
    metrics = json.loads((run / "metrics.json").read_text())
    epochs = metrics["epochs"]
    wall = (run / "metrics.json").stat().st_mtime - (run / "recipe.yaml").stat().st_mtime
    return {
        "recipe": RECIPE,
        "final_test_acc": metrics["final_test_acc"],
        "final_per_class_acc": metrics["final_per_class_acc"],
        "epochs": len(epochs),
        "train_images_per_epoch": epochs[-1]["train_samples"],
        "test_images": epochs[-1]["test_samples"],
        "test_acc_per_epoch": [e["test_acc"] for e in epochs],
        "seconds_per_epoch": [round(e["seconds"], 1) for e in epochs],
        "wall_minutes": round(wall / 60, 1),
        "cpu": f"{os.cpu_count()} cores, {platform.machine()}",
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/headline", help="run folder")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the run")
    parser.add_argument("--summarise", action="store_true", help="read a finished run only")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/clsnn_mnist_cpu.json"))
    args = parser.parse_args(argv)
    run = ROOT / args.run
    if not args.summarise:
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        command = [sys.executable, "-m", "sj_ext", "train", RECIPE, "--out", str(run)]
        subprocess.run(command, check=True, env=env, cwd=ROOT)
    result = summary(run)
    result["threads"] = args.threads
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{RECIPE}: final test accuracy {100 * result['final_test_acc']:.2f}% after "
        f"{result['epochs']} epochs of {result['train_images_per_epoch']} images, "
        f"{result['wall_minutes']} min wall on {result['cpu']} ({args.threads} threads)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
