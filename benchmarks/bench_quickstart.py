"""End-to-end wall time of the embedded default, as a user runs it.

    python benchmarks/bench_quickstart.py [--set key.path=value ...]

Runs ``sj-ext train recipes/digits_quickstart.yaml`` in a fresh process (start-up,
data, training, evaluation, checkpoints) and prints the wall time, the time per
epoch and the final test accuracy. Target on a 2-core CPU: < 120 s, accuracy >= 0.95.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable,
            "-m",
            "sj_ext",
            "train",
            str(ROOT / "recipes/digits_quickstart.yaml"),
            "--out",
            out,
        ]
        for item in args.overrides:
            cmd += ["--set", item]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    epochs = [row["seconds"] for row in metrics["epochs"]]
    print(
        f"digits_quickstart: {wall:.1f} s end to end, {len(epochs)} epochs "
        f"(median {sorted(epochs)[len(epochs) // 2]:.2f} s/epoch), "
        f"final test acc {metrics['final_test_acc']:.4f}, best {metrics['best_test_acc']:.4f}"
    )


if __name__ == "__main__":
    main()
