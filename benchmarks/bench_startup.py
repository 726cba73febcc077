"""Start-up time and peak memory of the paths that should not load torch, and what each loads.

    python benchmarks/bench_startup.py [--repo DIR] [--run RUN_FOLDER] [--repeat 5]
        [--note TEXT] [--out benchmarks/results/startup.json]

Every case runs in a fresh interpreter with ``DIR`` (default: this checkout) first
on ``sys.path``, so a worktree of an older commit is timed the same way
(``git worktree add /tmp/old REV``, then ``--repo /tmp/old``):

* ``import sj_ext.app.report`` -- reading run folders;
* ``sj-ext --version``;
* ``sj-ext report RUN`` -- only with ``--run`` (a finished run folder), into a temporary folder;
* ``sj-ext validate recipes/digits_quickstart.yaml --recipe-only`` -- needs every builder
  (their signatures are checked), so torch and torchvision;
* ``sj-ext train`` of a refused recipe, exit 2 expected: a misspelt key (``trian:``)
  and a hostile one (a "billion laughs" of aliases): the schema is checked before
  torch loads, so both should take well under 1 s and 100 MB.

Per case: the median wall time over ``--repeat`` runs (seconds), the median peak
resident memory of the process (MB, ``VmHWM``), and whether it loaded ``torch``
and any ``sj_ext.neuron`` module. Prints a table and writes the JSON to ``--out``,
with the machine's load average before and after (timings on a busy machine are
slower; ``--note`` says why it was busy).
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

# runs the case, then prints its exit status, its peak memory (kB) and whether torch / an
# sj_ext neuron module got loaded
PROBE = """
import re, runpy, sys
sys.argv = {argv!r}
status = 0
if sys.argv[0] == "import":
    __import__(sys.argv[1])
else:
    try:
        runpy.run_module("sj_ext", run_name="__main__")
    except SystemExit as e:
        status = e.code or 0
peak = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read())[1]
print("LOADED", status, peak, "torch" in sys.modules,
      any(m.startswith("sj_ext.neuron") for m in sys.modules), file=sys.stderr)
"""

# a misspelt recipe and a hostile one (10**8 values once its aliases are expanded)
MISSPELT = "trian:\n  epochs: 1\n"
HOSTILE = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n" for a, b in zip("abcdefg", "bcdefgh", strict=True)
)


def cases(run: str | None, scratch: str) -> dict[str, tuple[list[str], int]]:
    """``{name: (argv, expected exit status)}``; the refused recipes are written to ``scratch``."""
    refused = {}
    for kind, text in (("misspelt", MISSPELT), ("hostile", HOSTILE)):
        path = Path(scratch) / f"{kind}.yaml"
        path.write_text(text)
        argv = ["sj-ext", "train", str(path), "--out", f"{scratch}/run"]
        refused[f"sj-ext train {kind} recipe (refused)"] = (argv, 2)
    found = {
        "import sj_ext.app.report": (["import", "sj_ext.app.report"], 0),
        "sj-ext --version": (["sj-ext", "--version"], 0),
        "sj-ext validate --recipe-only": (
            ["sj-ext", "validate", "recipes/digits_quickstart.yaml", "--recipe-only"],
            0,
        ),
        **refused,
    }
    if run:
        found["sj-ext report RUN"] = (["sj-ext", "report", run, "--out", scratch], 0)
    return found


def measure(repo: Path, argv: list[str], expected: int, repeat: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    times, peaks, loaded = [], [], None
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
        line = [ln for ln in done.stderr.splitlines() if ln.startswith("LOADED")]
        if done.returncode or not line or int(line[-1].split()[1]) != expected:
            raise SystemExit(f"{' '.join(argv)}: not exit {expected} in {repo}:\n{done.stderr}")
        _, peak, *flags = line[-1].split()[1:]
        peaks.append(int(peak) / 1024)
        loaded = dict(zip(("torch", "neuron"), (w == "True" for w in flags), strict=True))
    return {
        "median_s": round(statistics.median(times), 3),
        "median_peak_mb": round(statistics.median(peaks), 1),
        "exit": expected,
        "runs": repeat,
        "loads": loaded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="the checkout to time")
    parser.add_argument("--run", help="a finished run folder for the report case")
    parser.add_argument("--repeat", type=int, default=5, help="runs per case (the median)")
    parser.add_argument("--note", help="a note kept in the JSON, e.g. what else ran")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/startup.json")
    args = parser.parse_args()
    repo = args.repo.resolve()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    load_before = os.getloadavg()[0]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, (argv, expected) in cases(args.run, scratch).items():
            results[name] = row = measure(repo, argv, expected, args.repeat)
            print(
                f"{name:40s} {row['median_s']:7.3f} s {row['median_peak_mb']:7.1f} MB   "
                f"torch {row['loads']['torch']!s:5s} neuron {row['loads']['neuron']}"
            )
    machine = {
        "cpus": os.cpu_count(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "note": args.note,
    }
    summary = {"repo_commit": commit or None, "machine": machine, "cases": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
