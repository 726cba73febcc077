"""The ``sj-ext`` command (also ``python -m sj_ext``).

    sj-ext train RECIPE.yaml [--set key.path=value ...] [--out DIR] [--resume [auto]]
    sj-ext eval RECIPE.yaml --checkpoint PATH [--set ...] [--out DIR]
    sj-ext validate RECIPE.yaml [RECIPE.yaml ...] [--set ...]
    sj-ext report RUN_DIR [RUN_DIR_B] [--out DIR]

Exit status: 0 on success, 2 for a bad recipe or command line, 1 when a run fails,
128 + the signal number when SIGTERM or Ctrl-C stopped a run (it prints how to continue).
"""

import argparse
import json
import os
import shlex
import signal
import sys
from pathlib import Path

from .recipe import RecipeError, load_recipe


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sj-ext", description="Train and evaluate sj_ext recipes.")
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
    r = sub.add_parser("report", help="figures and report.md of a run, or two runs overlaid")
    r.add_argument("runs", nargs="+", metavar="RUN_DIR", help="one or two run folders")
    r.add_argument(
        "--out", help="output folder (default: RUN_DIR/report, or RUN_DIR/report_vs_<B>)"
    )
    return p


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "report" and len(args.runs) > 2:
        parser.error(f"report takes one or two run folders, got {len(args.runs)}")
    from .engine import Preempted, TrainingError, evaluate_checkpoint, train

    try:
        if args.command == "validate":
            failed = 0
            for path in args.recipes:
                try:
                    load_recipe(path, args.overrides)
                    print(f"{path}: ok")
                except RecipeError as err:
                    print(err, file=sys.stderr)
                    failed += 1
            return 2 if failed else 0
        if args.command == "report":
            from .report import write_report

            report = write_report(args.runs, args.out)
            print(f"wrote {report} and {len(list(report.parent.glob('*.png')))} figure(s)")
            return 0
        recipe = load_recipe(args.recipe, args.overrides)
        if args.command == "train":
            out = _train_out(args)
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
            out.mkdir(parents=True, exist_ok=True)
            (out / "eval.json").write_text(json.dumps(result, indent=1))
            print(f"test acc {result['test_acc']:.4f} ({result['test_samples']} samples)")
        return 0
    except RecipeError as err:
        print(err, file=sys.stderr)
        return 2
    except (Preempted, KeyboardInterrupt) as err:
        signum = getattr(err, "signum", signal.SIGINT)
        print(f"sj-ext {args.command}: {err or 'interrupted'}", file=sys.stderr)
        if args.command == "train" and os.environ.get("RANK", "0") == "0":
            print(f"continue with: {_resume_command(args)}", file=sys.stderr)
        return 128 + signum
    except (TrainingError, FileNotFoundError, RuntimeError) as err:
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
