"""``sj-ext validate RECIPE.yaml ...``: recipes checked without training, and what this
machine lacks to run them. Torch-free until a recipe passes its schema."""

import sys

__all__ = ["command"]


def command(args) -> int:
    """Per recipe: valid or not (exit 2 if one is not) and what this machine lacks to run it.

    The schema is checked first, without torch; the builders' signatures and the
    machine only for a recipe that passes it. What the machine lacks is an error
    only with ``--strict``.
    """
    from .schema import RecipeError, read_recipe

    invalid, lacking = 0, 0
    for path in args.recipes:
        try:
            gaps = _builder_and_machine_gaps(read_recipe(path, args.overrides), path, args)
        except RecipeError as err:
            print(err, file=sys.stderr)
            invalid += 1
            continue
        lacking += bool(gaps)
        _print_gaps(path, gaps, sys.stderr if args.strict else sys.stdout)
    total = len(args.recipes)
    summary = f"{total - invalid} of {total} recipes valid"
    if lacking:
        summary += f"; {lacking} of them cannot run on this machine as it is"
        summary += " (--strict: an error)" if args.strict else " (an error only with --strict)"
    print(summary)
    return 2 if invalid or (args.strict and lacking) else 0


def _builder_and_machine_gaps(recipe: dict, path: str, args) -> list[str]:
    """What this machine lacks to run ``recipe`` (nothing with ``--recipe-only``).

    ``recipe`` has passed the schema; the builders' checks come first (they load torch).

    :raises RecipeError: a name or an ``args`` mapping the builders refuse
    """
    from .preflight import missing_here
    from .recipe import resolve

    recipe = resolve(recipe, path)
    return [] if args.recipe_only else missing_here(recipe)


def _print_gaps(path: str, gaps: list[str], stream) -> None:
    """``PATH: ok``, or that the recipe is valid and each thing this machine lacks for it."""
    if not gaps:
        print(f"{path}: ok")
        return
    print(f"{path}: valid; this machine lacks what it needs to run it:", file=stream)
    for gap in gaps:
        print(f"{path}: {gap}", file=stream)
