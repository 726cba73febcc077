"""The CL-SNN firing-rate trap, measured: per-class loss weight over training, and accuracy.

    python benchmarks/clsnn_trap.py --root DATA [--logit-scale 1|10] [--seed 0]

Trains ``recipes/clsnn_mnist.yaml`` through the engine (``sj_ext.app.engine.train``) on a fixed
subset of the real MNIST (``sj-ext data mnist --root DATA`` writes it): 4800 training /
2000 test images, T = 4, batch 16, 32 conv channels, one epoch (300 Adam steps), with the
curriculum monitor every 25 batches. Prints, per sampled batch, each class's weight ratio
(its share of the loss weight over its share of the batch: the class's mean sigma* over
the batch's, 1 = plain averaging; ``sj_ext.app.class_health``), then the per-class test
accuracy, and writes both as JSON (default
``benchmarks/results/clsnn_trap_s<scale>.json``). See docs/methods.md, The firing-rate trap (MNIST).
"""

import argparse
import json
from pathlib import Path

from sj_ext.app.engine import train
from sj_ext.app.monitor import read_records
from sj_ext.app.recipe import load_recipe

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "clsnn_mnist.yaml"
SETTINGS = [
    "data.train_samples=4800",
    "data.test_samples=2000",
    "data.T=4",
    "data.batch_size=16",
    "model.args.channels=32",
    "train.epochs=1",
    "train.device=cpu",
    "monitor.every=25",
    "monitor.names=[curriculum]",
]


def _rounded(values) -> list:
    return [None if v is None else round(v, 2) for v in values]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="folder holding MNIST/raw (torchvision's files)")
    p.add_argument("--logit-scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="run folder (default: runs/clsnn_trap/s<scale>)")
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    overrides = [
        f"data.root={a.root}",
        f"loss.args.logit_scale={a.logit_scale}",
        f"seed={a.seed}",
        *SETTINGS,
    ]
    out = a.out or Path("runs") / "clsnn_trap" / f"s{a.logit_scale:g}"
    metrics = train(load_recipe(RECIPE, overrides), out, resume="auto")
    trace = [
        {"batch": r["batch"], "weight_ratio": r["classes"]["weight_ratio"]}
        for r in read_records(out / "monitor" / "curriculum.jsonl")
    ]
    for record in trace:
        print(f"batch {record['batch']}: weight ratio per class {_rounded(record['weight_ratio'])}")
    per_class = metrics["final_per_class_acc"]
    print(f"test acc {metrics['final_test_acc']:.4f}; per class {_rounded(per_class)}")
    path = a.json or Path(f"benchmarks/results/clsnn_trap_s{a.logit_scale:g}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {"recipe": str(RECIPE.name), "overrides": overrides, "run_dir": str(out)}
    result.update(test_acc=metrics["final_test_acc"], per_class_acc=per_class, trace=trace)
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
