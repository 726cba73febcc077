r"""``sj-ext sweep``: a grid of recipes x seeds, run one by one, summarised per configuration.

A grid file (YAML)::

    seeds: [0, 1, 2]
    overrides: {data.root: data, train.epochs: 2}     # shared by every run
    configurations:
      - name: plif_ce                                 # a folder name: [A-Za-z0-9_.-]
        method: ce                                    # a free label (the method tested)
        recipe: ../recipes/clsnn_mnist.yaml           # relative to the grid file
        overrides: {loss.name: ce, loss.args: {}}

Every run is the recipe with the shared overrides, then the configuration's,
then the command line's ``--set`` (each ``key.path: value`` as ``sj-ext train
--set key.path=value``) and ``seed``; it trains in-process in its own folder
``OUT/<name>/seed<seed>``. Re-running the sweep skips finished runs (their
``metrics.json`` holds every epoch) and resumes interrupted ones from their
latest checkpoint, so a killed sweep continues where it stopped.

A grid may also name ``claims`` (``{name, question, baseline, arms}``: arms to
compare with a baseline arm, :mod:`sj_ext.app.compare`) and ``interactions``
(``{name, question, minuend, subtrahend}``: two claims of one arm each, whose
effects are compared seed by seed); both are copied into the results file.

After every run the JSON file is rewritten: ``{"grid", "runs": [...],
"summary": [...]}``; a run object holds ``name, method, recipe, overrides``
(all applied), ``seed, T, epochs, train_samples, test_samples`` (the counts of
the last epoch), ``device, final_test_acc, best_test_acc, best_val_acc`` (one of the
two bests is null: :func:`sj_ext.app.engine.train`), ``per_class_acc`` (the
last epoch's), ``seconds`` (training + evaluation, summed over epochs), ``commit``
(sj_ext's git commit at the run's start, from its ``environment.json``) and
``run_dir``; a summary object per configuration holds ``name, method, n`` and
the mean, the sample standard deviation (:math:`\frac{1}{n-1}`; ``None`` for
``n = 1``) of ``final_test_acc``, ``best_test_acc`` and ``best_val_acc`` (``None``
where the runs lack it: a run has one of the two bests), and the mean ``seconds``.
The same table as markdown (mean ± std in %) is printed and written beside the
JSON (``.md``).
"""

import sys
from pathlib import Path

from ..engine import train
from .grid import Job, SweepError, finished, load_grid, read_claims
from .results import markdown, read_results, recipe_digest, record, recorded, summarise, write

__all__ = [
    "SweepError",
    "command",
    "Job",
    "load_grid",
    "run_sweep",
    "summarise",
    "markdown",
    "recipe_digest",
]


def run_sweep(grid: str | Path, jobs: list[Job], json_path: str | Path, log=print) -> dict:
    """Run (or skip, or resume) every job in order; merge each run into ``json_path``.

    A job is skipped when the results file already records it with the same
    resolved recipe (:func:`recipe_digest`), or when its folder holds the
    finished run. Runs of other jobs in the file are kept, so sweeps of
    several shards (or of a grid run piece by piece) fill one file.
    Returns ``{"grid", "claims", "runs", "summary"}`` as last written.
    """
    json_path = Path(json_path)
    questions = read_claims(grid)
    result = {"grid": str(grid), **questions, **read_results(json_path)}
    for i, job in enumerate(jobs, 1):
        tag = f"[{i}/{len(jobs)}] {job.name} seed {job.seed}"
        if recorded(job, json_path) is not None:
            log(f"{tag}: in {json_path} already, skipped")
            continue
        metrics = finished(job)
        if metrics is not None:
            log(f"{tag}: finished before, skipped ({job.run_dir})")
        else:
            log(f"{tag}: training in {job.run_dir}")  # train says when it resumes
            metrics = train(job.recipe, job.run_dir, resume="auto", log=log)
        result = write(json_path, str(grid), questions, record(job, metrics))
    result.setdefault("runs", [])
    result["summary"] = summarise(result["runs"])
    return result


def command(args) -> int:
    """``sj-ext sweep GRID.yaml``: the grid's jobs run, the results file and its summary."""
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
