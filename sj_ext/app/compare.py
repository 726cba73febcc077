r"""``sj-ext compare RESULTS.json``: each arm of a sweep against a baseline, paired by seed.

A sweep's results file (:mod:`sj_ext.app.sweep`) holds one run object per arm
(configuration ``name``) and ``seed``. A *claim* asks whether some arms beat a
baseline arm::

    "claims": [{"name": "ds_atgo", "question": "does the adaptive threshold help?",
                "baseline": "plif_ce", "arms": ["ds_atgo", "ds_atgo_fixed"]}]

(``arms`` may name the baseline or not; it is shown first). An arm with no run yet
(a study run in pieces) is listed as ``pending`` and left out; a claim whose
baseline has none is all pending, as is an interaction of it. Without ``claims``,
``--baseline NAME`` makes one claim ``all``: every arm of the file against ``NAME``.

Runs of the same seed share their initialisation and data order, so arm
:math:`a` is compared with the baseline :math:`b` on the seeds both ran, through
the paired differences of the final test accuracy and their Student t interval
(:mod:`sj_ext.app.pairs`, which gives the maths and the verdict).

An *interaction* asks whether one claim's effect is larger than another's (a
method's gain in a deeper net against a shallower one, say). For two claims
:math:`A` and :math:`B` of one arm each it takes, seed by seed,

.. math::

    e_s = \bigl(\mathrm{acc}_{a_A}(s) - \mathrm{acc}_{b_A}(s)\bigr)
        - \bigl(\mathrm{acc}_{a_B}(s) - \mathrm{acc}_{b_B}(s)\bigr)

on the seeds all four arms ran, and the same mean and Student t interval of the
:math:`e_s`; the verdict is ``larger``, ``smaller`` or ``inside the noise``.

Per arm the table also gives the mean and sample standard deviation
(:math:`\frac{1}{n-1}`) of the accuracy over all its seeds, the per-class
accuracy averaged over seeds and its worst class, and the mean seconds, spikes
and synaptic operations per image. :func:`write` saves the table as JSON,
markdown (:func:`markdown`) and a PNG figure (:func:`figure`).

Torch-free: the standard library, numpy, scipy and matplotlib.
"""

import json
import math
import statistics
import sys
from pathlib import Path

from .checks import INT, LIST, NUMBER, OPT_LIST, OPT_STR, STR, Field, check_items, raise_problems
from .pairs import CONFIDENCE, VERDICTS, paired_difference, verdict
from .report.paired import figure, markdown, write
from .runfiles import is_number

__all__ = [
    "CONFIDENCE",
    "command",
    "VERDICTS",
    "CompareError",
    "paired_difference",
    "load_results",
    "compare",
    "markdown",
    "figure",
    "write",
]

#: of an interaction: the first claim's effect against the second's
INTERACTION_VERDICTS = dict(zip(VERDICTS, ("larger", "smaller", "inside the noise"), strict=True))


class CompareError(ValueError):
    """A results file or a claim that cannot be compared (names the file, key or arm)."""


def load_results(path: str | Path) -> dict:
    """The results file of a sweep (JSON object with a ``runs`` list).

    :raises CompareError: the file is missing, unreadable, not valid JSON or has no ``runs`` list
    """
    path = Path(path)
    if not path.is_file():
        raise CompareError(f"{path}: no such results file")
    try:
        results = json.loads(path.read_text(errors="replace"))
    except OSError as e:
        raise CompareError(f"{path}: cannot read it ({e.strerror or e})") from e
    except json.JSONDecodeError as e:
        raise CompareError(f"{path}: truncated or not valid JSON ({e})") from e
    if not isinstance(results, dict) or not isinstance(results.get("runs"), list):
        raise CompareError(f"{path}: not a sweep results file (no 'runs' list)")
    return results


def _finite(value: float) -> str | None:
    return None if math.isfinite(value) else f"expected a finite number, got {value!r}"


def _numbers_or_nulls(values: list) -> str | None:
    if all(v is None or is_number(v, finite=True) for v in values):
        return None
    return "expected a list of numbers or nulls"


def _names(items: list) -> str | None:
    return None if all(isinstance(a, str) for a in items) else "expected a list of arm names"


#: what compare reads of a run object of a results file (:mod:`sj_ext.app.checks`; other
#: keys are kept unread)
RUN = {
    "name": Field(STR, help="the arm (configuration) of the run"),
    "seed": Field(INT, help="the run's seed"),
    "final_test_acc": Field(NUMBER, help="the final test accuracy", rule=_finite),
    "per_class_acc": Field(OPT_LIST, None, rule=_numbers_or_nulls),
}
#: a claim of a results file
CLAIM = {
    "name": Field(OPT_STR, None),
    "question": Field(OPT_STR, None),
    "baseline": Field(STR, help="the arm the others are compared with"),
    "arms": Field(LIST, help="arm names", rule=_names),
}


def _check_runs(runs) -> dict[str, dict[int, dict]]:
    """``{arm name: {seed: run}}`` in first-run order; a wrongly typed or repeated run raises."""
    if not isinstance(runs, list):
        raise CompareError("'runs' is not a list of run objects")
    raise_problems(CompareError, check_items(RUN, runs, "runs", closed=False)[1])
    arms: dict[str, dict[int, dict]] = {}
    for i, run in enumerate(runs):
        seeds = arms.setdefault(run["name"], {})
        if run["seed"] in seeds:
            raise CompareError(
                f"runs[{i}]: arm {run['name']!r} has seed {run['seed']} twice; pairs are ambiguous"
            )
        seeds[run["seed"]] = run
    return arms


def _claims(results: dict, baseline: str | None, arms: dict) -> list[dict]:
    if baseline is not None:
        return [
            {
                "name": "all",
                "question": f"every arm against {baseline}",
                "baseline": baseline,
                "arms": list(arms),
            }
        ]
    claims = results.get("claims")
    if not claims:
        raise CompareError(
            "the results have no 'claims' key (or it is empty): name the baseline arm with "
            f"--baseline NAME to compare every arm with it (arms: {', '.join(arms)})"
        )
    if not isinstance(claims, list):
        raise CompareError("'claims' is not a list of claim objects")
    claims, problems = check_items(CLAIM, claims, "claims")
    raise_problems(CompareError, problems)
    checked = [
        {
            "name": claim["name"] or f"claim{i + 1}",
            "question": claim["question"] or "",
            "baseline": claim["baseline"],
            "arms": claim["arms"],
        }
        for i, claim in enumerate(claims)
    ]
    return checked


def _mean(values: list) -> float | None:
    values = [float(v) for v in values if is_number(v, finite=True)]
    return statistics.fmean(values) if values else None


def _per_class_mean(name: str, runs: list[dict]) -> list[float | None] | None:
    """Per class, the mean accuracy over the seeds that have it (``None``: no seed has it)."""
    rows = [r["per_class_acc"] for r in runs if r.get("per_class_acc")]
    if not rows:
        return None
    if len({len(row) for row in rows}) > 1:
        raise CompareError(f"arm {name!r}: 'per_class_acc' lists differ in length between seeds")
    return [_mean(column) for column in zip(*rows, strict=True)]


def _arm(
    name: str, by_seed: dict[int, dict], base: dict[int, dict] | None, resolution: float
) -> dict:
    seeds = sorted(by_seed)
    runs = [by_seed[s] for s in seeds]
    acc = [float(r["final_test_acc"]) for r in runs]
    per_class = _per_class_mean(name, runs)
    classes = [(v, k) for k, v in enumerate(per_class or []) if v is not None]
    worst = min(classes, default=None)
    diff = None
    if base is not None:
        common = sorted(set(by_seed) & set(base))
        diff = paired_difference(
            [by_seed[s]["final_test_acc"] for s in common],
            [base[s]["final_test_acc"] for s in common],
            resolution=resolution,
        )
        diff["seeds"] = common
    return {
        "name": name,
        "n": len(seeds),
        "seeds": seeds,
        "acc": acc,
        "mean": statistics.fmean(acc),
        "sd": statistics.stdev(acc) if len(acc) > 1 else None,
        "per_class_mean": per_class,
        "worst_class": None if worst is None else {"class": worst[1], "acc": worst[0]},
        "seconds_mean": _mean([r.get("seconds") for r in runs]),
        "spikes_per_image_mean": _mean([r.get("spikes_per_image") for r in runs]),
        "synops_per_image_mean": _mean([r.get("synops_per_image") for r in runs]),
        "diff": diff,
        "verdict": None if diff is None else verdict(diff),
    }


def compare(results: dict, baseline: str | None = None) -> dict:
    """Each claim's arms against its baseline, paired by seed (see the module's docstring).

    The claims are ``results["claims"]``; with ``baseline`` (an arm name) one claim
    ``all`` of every arm against it instead. Per claim: ``{"name", "question",
    "baseline", "arms"}``, the baseline first; per arm: ``name, n, seeds`` (sorted),
    ``acc`` (final test accuracy per seed), ``mean, sd`` (sample; ``None`` for one
    seed), ``per_class_mean`` (over seeds), ``worst_class`` (``{"class", "acc"}``,
    the lowest of ``per_class_mean``), ``seconds_mean, spikes_per_image_mean,
    synops_per_image_mean`` (``None`` where no run has them), ``diff``
    (:func:`paired_difference` on the seeds both ran, plus those ``seeds``;
    ``None`` for the baseline) and ``verdict`` (one of :data:`VERDICTS`; ``None``
    for the baseline). Accuracies are fractions.

    :returns: ``{"grid", "confidence", "resolution", "claims": [...], "interactions": [...]}``
        (the interactions: :func:`_interactions`; ``resolution``:
        the grid step :math:`h` of the accuracies, 0.0 where no run records ``test_samples``)
    :raises CompareError: (a ``ValueError``) no claims and no ``baseline``; a claim
        names an arm that has no run (the message lists the arms there are); a run
        or claim is wrongly typed, or an arm has a seed twice
    """
    if not isinstance(results, dict):
        raise CompareError("the results are not a JSON object")
    arms = _check_runs(results.get("runs"))
    if not arms:
        raise CompareError("the results hold no runs")
    if baseline is not None and baseline not in arms:
        raise CompareError(
            f"--baseline: arm {baseline!r} has no runs in the results (arms there: "
            f"{', '.join(arms)})"
        )
    resolution = _resolution(results["runs"])
    table = [_claim_table(claim, arms, resolution) for claim in _claims(results, baseline, arms)]
    return {
        "grid": results.get("grid"),
        "confidence": CONFIDENCE,
        "resolution": resolution,
        "claims": table,
        "interactions": _interactions(results.get("interactions") or [], table, resolution),
    }


def _resolution(runs: list[dict]) -> float:
    """1 / the fewest ``test_samples`` of any run that records it (0.0: none does)."""
    counts = [r.get("test_samples") for r in runs]
    counts = [c for c in counts if isinstance(c, int) and not isinstance(c, bool) and c > 0]
    return 1.0 / min(counts) if counts else 0.0


def _claim_table(claim: dict, arms: dict[str, dict[int, dict]], resolution: float) -> dict:
    """One claim's rows, the baseline first; ``pending``: its arms with no run yet (a study
    run in pieces). A claim whose baseline has no run has no rows."""
    names = list(dict.fromkeys([claim["baseline"], *claim["arms"]]))
    pending = [name for name in names if name not in arms]
    if claim["baseline"] in pending:
        return {**claim, "arms": [], "pending": names}
    base = arms[claim["baseline"]]
    rows = [_arm(claim["baseline"], base, None, resolution)]
    rows += [_arm(name, arms[name], base, resolution) for name in names[1:] if name not in pending]
    return {**claim, "arms": rows, "pending": pending}


def _effect(claim: dict) -> dict[int, float]:
    """``{seed: accuracy of the claim's one arm - its baseline's}`` on the seeds both ran."""
    base, arm = claim["arms"][0], claim["arms"][1]
    return {
        s: arm["acc"][arm["seeds"].index(s)] - base["acc"][base["seeds"].index(s)]
        for s in arm["diff"]["seeds"]
    }


def _interactions(items, table: list[dict], resolution: float) -> list[dict]:
    """Each interaction's paired difference of two claims' effects (the module's docstring)."""
    if not isinstance(items, list):
        raise CompareError("'interactions' is not a list of interaction objects")
    by_name = {c["name"]: c for c in table}
    out = []
    for i, item in enumerate(items):
        where = f"interactions[{i}]"
        if not isinstance(item, dict):
            raise CompareError(f"{where} is not an object")
        effects = []
        for key in ("minuend", "subtrahend"):
            claim = by_name.get(item.get(key))
            if claim is None or len(claim["arms"]) + len(claim["pending"]) != 2:
                raise CompareError(
                    f"{where}.{key}: {item.get(key)!r} is no claim of one arm besides its "
                    f"baseline (claims: {', '.join(by_name)})"
                )
            if claim["pending"]:
                break
            effects.append(_effect(claim))
        if len(effects) < 2:  # an arm of it has no run yet
            out.append({**item, "diff": None, "verdict": None, "pending": True})
            continue
        seeds = sorted(set(effects[0]) & set(effects[1]))
        diff = paired_difference(
            [effects[0][s] for s in seeds], [effects[1][s] for s in seeds], resolution=resolution
        )
        diff["seeds"] = seeds
        word = INTERACTION_VERDICTS[verdict(diff)]
        out.append({**item, "diff": diff, "verdict": word, "pending": False})
    return out


def command(args) -> int:
    """``sj-ext compare``: reads a results file only (no torch, no recipe registries)."""
    results = Path(args.results)
    loaded = None
    try:
        loaded = load_results(results)  # its errors name the file
        table = compare(loaded, args.baseline)
    except CompareError as err:
        where = "" if loaded is None else f"{results}: "
        print(f"sj-ext compare: {where}{err}", file=sys.stderr)
        return 2
    if args.out is None:  # the table only: nothing written beside the results
        print(markdown(table), end="")
        return 0
    try:
        written = write(table, args.out)
    except OSError as err:
        print(f"sj-ext compare: cannot write {args.out}.*: {err.strerror or err}", file=sys.stderr)
        return 2
    print(markdown(table) + f"wrote {', '.join(str(p) for p in written)}")
    return 0
