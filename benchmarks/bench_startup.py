"""Start-up time of the paths that should not load torch, and what each one loads.

    python benchmarks/bench_startup.py [--repo DIR] [--run RUN_FOLDER] [--repeat 5]
        [--out benchmarks/results/startup.json]

Every case runs in a fresh interpreter with ``DIR`` (default: this checkout) first
on ``sys.path``, so a worktree of an older commit is timed the same way
(``git worktree add /tmp/old REV``, then ``--repo /tmp/old``):

* ``import sj_ext.report`` -- reading run folders;
* ``sj-ext --version``;
* ``sj-ext report RUN`` -- only with ``--run`` (a finished run folder), into a temporary folder;
* ``sj-ext validate recipes/digits_quickstart.yaml --recipe-only`` -- needs every builder
  (their signatures are checked), so torch and torchvision.

Per case: the median wall time over ``--repeat`` runs (seconds), and whether the
process loaded ``torch`` and any ``sj_ext.neuron`` module. Prints a table and
writes the JSON to ``--out``.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# runs the case, then prints whether torch / an sj_ext neuron module got loaded
PROBE = """
import runpy, sys
sys.argv = {argv!r}
if sys.argv[0] == "import":
    __import__(sys.argv[1])
else:
    try:
        runpy.run_module("sj_ext", run_name="__main__")
    except SystemExit as e:
        if e.code:
            raise
print("LOADED", "torch" in sys.modules, any(m.startswith("sj_ext.neuron") for m in sys.modules),
      file=sys.stderr)
"""


def cases(run: str | None, scratch: str) -> dict[str, list[str]]:
    found = {
        "import sj_ext.report": ["import", "sj_ext.report"],
        "sj-ext --version": ["sj-ext", "--version"],
        "sj-ext validate --recipe-only": [
            "sj-ext",
            "validate",
            "recipes/digits_quickstart.yaml",
            "--recipe-only",
        ],
    }
    if run:
        found["sj-ext report RUN"] = ["sj-ext", "report", run, "--out", scratch]
    return found


def measure(repo: Path, argv: list[str], repeat: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    times, loaded = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", PROBE.format(argv=argv)],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
        )
        times.append(time.perf_counter() - start)
        if done.returncode:
            raise SystemExit(f"{' '.join(argv)} failed in {repo}:\n{done.stderr}")
        line = [ln for ln in done.stderr.splitlines() if ln.startswith("LOADED")][-1]
        loaded = dict(
            zip(("torch", "neuron"), (w == "True" for w in line.split()[1:]), strict=True)
        )
    return {"median_s": round(statistics.median(times), 3), "runs": repeat, "loads": loaded}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout to time")
    parser.add_argument("--run", help="a finished run folder for the report case")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/startup.json")
    args = parser.parse_args()
    repo = args.repo.resolve()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, argv in cases(args.run, scratch).items():
            results[name] = measure(repo, argv, args.repeat)
            row = results[name]
            print(
                f"{name:32s} {row['median_s']:7.3f} s   torch {row['loads']['torch']!s:5s} "
                f"neuron {row['loads']['neuron']}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"repo_commit": commit, "cases": results}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
