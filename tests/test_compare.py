"""``sj-ext compare``: paired differences by seed, verdicts, the table, the figure, the CLI."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, png_size
from scipy import stats

from sj_ext.app.compare import compare, figure, markdown, paired_difference, write

BASE = [0.90, 0.92, 0.91, 0.93, 0.89]  # the baseline's accuracy at seeds 0..4


def run(name, seed, acc, per_class=None, seconds=100.0, spikes=None, synops=None) -> dict:
    return {
        "name": name,
        "method": "ce",
        "seed": seed,
        "final_test_acc": acc,
        "best_test_acc": acc,
        "per_class_acc": per_class,
        "seconds": seconds,
        "epochs": 1,
        "spikes_per_image": spikes,
        "synops_per_image": synops,
    }


def arms_of(accs: dict[str, list[float]]) -> list[dict]:
    return [run(name, seed, a) for name, values in accs.items() for seed, a in enumerate(values)]


@pytest.fixture
def results() -> dict:
    """A baseline, a clearly better, a clearly worse and a noisy arm over five seeds."""
    accs = {
        "base": BASE,
        "better": [b + d for b, d in zip(BASE, [0.020, 0.021, 0.019, 0.020, 0.022], strict=True)],
        "worse": [b - d for b, d in zip(BASE, [0.030, 0.031, 0.029, 0.030, 0.032], strict=True)],
        "noisy": [b + d for b, d in zip(BASE, [0.02, -0.02, 0.01, -0.01, 0.0], strict=True)],
    }
    return {
        "grid": "grid.yaml",
        "runs": arms_of(accs),
        "summary": [],
        "claims": [
            {
                "name": "three",
                "question": "which arms beat the baseline?",
                "baseline": "base",
                "arms": ["better", "worse", "noisy", "base"],  # the baseline listed last
            }
        ],
    }


def by_name(claim: dict) -> dict:
    return {arm["name"]: arm for arm in claim["arms"]}


# ---------------------------------------------------------------------------- paired_difference


@pytest.mark.parametrize("n", [2, 3, 5, 9])
def test_paired_difference_is_the_interval_of_the_paired_t_test(n):
    rng = np.random.default_rng(n)
    a, b = rng.uniform(0.8, 1.0, n), rng.uniform(0.8, 1.0, n)
    got = paired_difference(list(a), list(b))
    d = a - b
    assert got["n"] == n
    assert got["mean"] == pytest.approx(d.mean(), abs=1e-12)
    assert got["sd"] == pytest.approx(d.std(ddof=1), rel=1e-9)
    low, high = stats.t.interval(0.95, n - 1, loc=d.mean(), scale=stats.sem(d))
    assert (got["low"], got["high"]) == pytest.approx((low, high), rel=1e-9)
    test = stats.ttest_rel(a, b)
    ci = test.confidence_interval(0.95)
    assert (got["low"], got["high"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert got["mean"] / (got["sd"] / math.sqrt(n)) == pytest.approx(test.statistic, rel=1e-9)


def test_paired_difference_confidence_and_degenerate_sizes():
    a, b = [0.91, 0.95, 0.90, 0.97], [0.90, 0.92, 0.91, 0.93]
    d = np.subtract(a, b)
    narrow = paired_difference(a, b, confidence=0.8)
    low, high = stats.t.interval(0.8, 3, loc=d.mean(), scale=stats.sem(d))
    assert (narrow["low"], narrow["high"]) == pytest.approx((low, high), rel=1e-9)
    assert narrow["high"] - narrow["low"] < (lambda w: w["high"] - w["low"])(
        paired_difference(a, b)
    )

    one = paired_difference([0.95], [0.93])
    assert one["n"] == 1 and one["mean"] == pytest.approx(0.02)
    assert one["sd"] is one["low"] is one["high"] is None
    assert paired_difference([], [])["mean"] is None
    with pytest.raises(ValueError, match="pairs"):
        paired_difference([0.9, 0.8], [0.9])
    with pytest.raises(ValueError, match="confidence"):
        paired_difference(a, b, confidence=95)


def test_equal_differences_on_the_accuracy_grid_keep_an_interval():
    """Two seeds both 2 of 10,000 test images apart: s_d is 0 (but for rounding), and the
    interval is the t interval of the grid's rounding spread h / sqrt(12), not a point."""
    a, b, h = [0.9947, 0.9941], [0.9945, 0.9939], 1e-4
    collapsed = paired_difference(a, b)
    assert collapsed["high"] - collapsed["low"] < 1e-12  # what the floor prevents
    got = paired_difference(a, b, resolution=h)
    assert got["sd"] == pytest.approx(0.0, abs=1e-12) and got["mean"] == pytest.approx(2e-4)
    half = stats.t.ppf(0.975, 1) * (h / math.sqrt(12)) / math.sqrt(2)  # 12.706 * 2.04e-5
    assert (got["low"], got["high"]) == pytest.approx((2e-4 - half, 2e-4 + half), rel=1e-9)
    assert got["low"] < 0 < got["high"]
    # pairs that spread by more than the grid: the paired t-test's interval, unchanged
    rng = np.random.default_rng(0)
    x, y = list(rng.uniform(0.8, 1.0, 5)), list(rng.uniform(0.8, 1.0, 5))
    assert paired_difference(x, y, resolution=h) == paired_difference(x, y)
    with pytest.raises(ValueError, match="resolution"):
        paired_difference(a, b, resolution=-h)


def test_compare_takes_the_grid_from_the_runs_test_samples():
    runs = [run("base", 0, 0.9945), run("base", 1, 0.9939)]
    runs += [run("arm", 0, 0.9947), run("arm", 1, 0.9941)]
    assert by_name(compare({"runs": runs}, baseline="base")["claims"][0])["arm"]["verdict"] == (
        "better"  # no test_samples recorded: the plain t interval, a point above 0
    )
    for r, n in zip(runs, [10000, 10000, 10000, 5000], strict=True):
        r["test_samples"] = n
    table = compare({"runs": runs}, baseline="base")
    assert table["resolution"] == 1 / 5000  # the fewest test images of any run
    arm = by_name(table["claims"][0])["arm"]
    half = stats.t.ppf(0.975, 1) * (2e-4 / math.sqrt(12)) / math.sqrt(2)
    assert arm["diff"]["high"] - arm["diff"]["low"] == pytest.approx(2 * half, rel=1e-9)
    assert arm["verdict"] == "inside the noise"


# ------------------------------------------------------------------------------------- compare


def test_pairs_only_on_the_seeds_both_ran():
    runs = arms_of({"base": [0.90, 0.91, 0.92]})
    runs += [run("arm", 0, 0.93), run("arm", 2, 0.96), run("arm", 3, 0.50)]  # no seed 1; 3 extra
    table = compare({"runs": runs}, baseline="base")
    arm = by_name(table["claims"][0])["arm"]
    assert arm["n"] == 3 and arm["seeds"] == [0, 2, 3] and arm["acc"] == [0.93, 0.96, 0.50]
    assert arm["diff"]["n"] == 2 and arm["diff"]["seeds"] == [0, 2]
    assert arm["diff"]["mean"] == pytest.approx(((0.93 - 0.90) + (0.96 - 0.92)) / 2)
    assert arm["mean"] == pytest.approx((0.93 + 0.96 + 0.50) / 3)
    assert "(2 pairs)" in markdown(table)


def test_verdicts_and_the_baseline_first(results):
    claim = compare(results)["claims"][0]
    assert [a["name"] for a in claim["arms"]] == ["base", "better", "worse", "noisy"]
    arms = by_name(claim)
    assert arms["base"]["diff"] is None and arms["base"]["verdict"] is None
    assert arms["better"]["verdict"] == "better" and arms["better"]["diff"]["low"] > 0
    assert arms["worse"]["verdict"] == "worse" and arms["worse"]["diff"]["high"] < 0
    noisy = arms["noisy"]
    assert noisy["verdict"] == "inside the noise"
    assert noisy["diff"]["low"] < 0 < noisy["diff"]["high"]
    assert arms["better"]["diff"]["mean"] == pytest.approx(0.0204)
    assert arms["base"]["sd"] == pytest.approx(np.std(BASE, ddof=1))


def test_one_pair_is_inside_the_noise_however_large():
    runs = [run("base", 0, 0.50), run("arm", 0, 0.99), run("arm", 1, 0.99)]
    arm = by_name(compare({"runs": runs}, baseline="base")["claims"][0])["arm"]
    assert arm["diff"]["n"] == 1 and arm["verdict"] == "inside the noise"


def test_worst_class_and_the_means_of_the_other_records():
    runs = [
        run("base", 0, 0.95, [0.99, None, 0.98], seconds=10.0, spikes=100.0, synops=5e5),
        run("base", 1, 0.93, [0.97, 0.80, 0.96], seconds=30.0, spikes=300.0),
        run("flat", 0, 0.95, [0.99, 0.95, 0.98], seconds=10.0),
        run("flat", 1, 0.93, [0.97, 0.99, 0.90], seconds=20.0),
    ]
    arms = by_name(compare({"runs": runs}, baseline="base")["claims"][0])
    base, flat = arms["base"], arms["flat"]
    # class 1 of seed 0 has no sample (null): its mean is seed 1's alone
    assert base["per_class_mean"] == pytest.approx([0.98, 0.80, 0.97])
    assert base["worst_class"] == {"class": 1, "acc": pytest.approx(0.80)}
    assert flat["worst_class"] == {"class": 2, "acc": pytest.approx(0.94)}
    assert base["seconds_mean"] == 20.0 and base["spikes_per_image_mean"] == 200.0
    assert base["synops_per_image_mean"] == 5e5
    assert flat["spikes_per_image_mean"] is None and flat["synops_per_image_mean"] is None
    no_classes = by_name(compare({"runs": arms_of({"b": [0.9]})}, baseline="b")["claims"][0])
    assert no_classes["b"]["worst_class"] is None and no_classes["b"]["per_class_mean"] is None


def test_arms_not_run_yet_are_pending_and_a_missing_baseline_option_is_an_error(results, tmp_path):
    with pytest.raises(ValueError, match=r"--baseline: arm 'gone' has no runs.*there: base, "):
        compare(results, baseline="gone")
    results["claims"][0].update(arms=["better", "later"])  # a study run in pieces
    results["claims"].append(
        {"name": "next", "question": "", "baseline": "unrun", "arms": ["better"]}
    )
    first, second = compare(results)["claims"]
    assert [a["name"] for a in first["arms"]] == ["base", "better"] and first["pending"] == [
        "later"
    ]
    assert second["arms"] == [] and second["pending"] == ["unrun", "better"]
    text = markdown(compare(results))
    assert "Not run yet: later." in text and "Not run yet: unrun, better." in text
    assert "| better | 5 |" in text
    png_size(figure(compare(results), tmp_path / "f.png"))  # the claims with runs only


def test_without_claims_the_baseline_option_is_needed(results):
    del results["claims"]
    with pytest.raises(ValueError, match=r"'claims'.*--baseline"):
        compare(results)
    table = compare(results, baseline="noisy")
    (claim,) = table["claims"]
    assert claim["name"] == "all" and claim["baseline"] == "noisy"
    assert [a["name"] for a in claim["arms"]] == ["noisy", "base", "better", "worse"]
    assert by_name(claim)["base"]["diff"]["n"] == 5


def test_a_seed_twice_is_refused(results):
    results["runs"].append(run("better", 0, 0.5))
    with pytest.raises(ValueError, match="'better' has seed 0 twice"):
        compare(results)


def test_markdown_has_a_heading_and_a_row_per_arm(results):
    results["runs"][0]["spikes_per_image"] = 12345.6
    results["runs"][0]["synops_per_image"] = 2.5e6
    text = markdown(compare(results))
    assert "## three: which arms beat the baseline?" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("|")}
    assert {"base", "better", "worse", "noisy"} <= rows.keys()
    assert "| 5 | 91.00 ± 1.58 |" in rows["base"] and "baseline" in rows["base"]
    # spikes and SynOps per image of seed 0 only: the others are null
    assert "| 12,346 | 2,500,000 |" in rows["base"]
    assert "+2.04 [" in rows["better"] and rows["better"].endswith("| better |")
    assert rows["worse"].endswith("| worse |")
    assert rows["noisy"].endswith("| inside the noise |")


# ------------------------------------------------------------------------------ figure, files


def test_write_gives_the_json_the_markdown_and_a_real_png(tmp_path, results):
    results["claims"].append(
        {"name": "one", "question": "", "baseline": "base", "arms": ["better"]}
    )
    table = compare(results)
    written = write(table, tmp_path / "sub" / "out.v1")
    assert [p.name for p in written] == ["out.v1.json", "out.v1.md", "out.v1.png"]
    assert json.loads(written[0].read_text()) == json.loads(json.dumps(table))
    assert written[1].read_text() == markdown(table)
    width, height = png_size(written[2])
    assert width >= 600 and height >= 600  # two rows of panels
    assert written[2].stat().st_size > 10_000
    alone = figure(compare({"runs": arms_of({"b": [0.9, 0.8]})}, baseline="b"), tmp_path / "b.png")
    assert png_size(alone)[0] >= 600


# --------------------------------------------------------------------------------------- CLI


def sj_ext(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sj_ext", "compare", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )


def test_cli_writes_the_three_files_and_prints_the_table(tmp_path, results):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(results))
    out = sj_ext(str(path))  # bare: the table, and nothing written beside the results
    assert out.returncode == 0, out.stderr
    assert "| better | 5 |" in out.stdout and sorted(tmp_path.iterdir()) == [path]
    prefix = tmp_path / "sweep_compare"
    out = sj_ext(str(path), "--out", str(prefix))
    assert out.returncode == 0, out.stderr
    for suffix in (".json", ".md", ".png"):
        assert prefix.with_name(prefix.name + suffix).is_file(), suffix
    md = prefix.with_name("sweep_compare.md").read_text()
    for name in ("base", "better", "worse", "noisy"):
        assert f"| {name} | 5 |" in md and f"| {name} | 5 |" in out.stdout
    png_size(prefix.with_name("sweep_compare.png"))

    del results["claims"]
    path.write_text(json.dumps(results))
    out = sj_ext(str(path), "--baseline", "worse", "--out", str(tmp_path / "mine"))
    assert out.returncode == 0, out.stderr
    table = json.loads((tmp_path / "mine.json").read_text())
    assert table["claims"][0]["baseline"] == "worse"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such results file"),
        ('{"runs": [', "not valid JSON"),
        ('{"runs": {}}', "no 'runs' list"),
        (json.dumps({"runs": arms_of({"a": [0.9]})}), "--baseline NAME"),
    ],
)
def test_cli_a_bad_file_exits_2_naming_it(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    out = sj_ext(str(path))
    assert out.returncode == 2
    assert str(path) in out.stderr and message in out.stderr
    assert not list(tmp_path.glob("bad_compare*"))


def test_cli_a_missing_arm_exits_2(tmp_path, results):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(results))
    out = sj_ext(str(path), "--baseline", "nope")
    assert out.returncode == 2 and "'nope'" in out.stderr and "better" in out.stderr


def test_compare_loads_no_torch(tmp_path, results, run_python):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(results))
    code = (
        "import sys; from sj_ext.app.cli import main; "
        f"assert main(['compare', {str(path)!r}]) == 0; "
        "print(sorted(m for m in ('torch', 'spikingjelly') if m in sys.modules))"
    )
    assert run_python(code).splitlines()[-1] == "[]"


# --------------------------------------------------------------------------------- interactions


def test_an_interaction_is_the_paired_difference_of_two_claims_effects():
    rng = np.random.default_rng(3)
    accs = {name: list(0.9 + 0.01 * rng.standard_normal(5)) for name in ("sf", "sa", "df", "da")}
    accs["da"] = accs["da"][:4]  # seed 4 missing in one arm: dropped from the interaction
    results = {
        "runs": arms_of(accs),
        "claims": [
            {"name": "shallow", "question": "", "baseline": "sf", "arms": ["sa"]},
            {"name": "deep", "question": "", "baseline": "df", "arms": ["da"]},
        ],
        "interactions": [
            {
                "name": "depth",
                "question": "larger deep?",
                "minuend": "deep",
                "subtrahend": "shallow",
            }
        ],
    }
    (item,) = compare(results)["interactions"]
    e = [(accs["da"][s] - accs["df"][s]) - (accs["sa"][s] - accs["sf"][s]) for s in range(4)]
    low, high = stats.t.interval(0.95, 3, loc=np.mean(e), scale=stats.sem(e))
    assert item["diff"]["seeds"] == [0, 1, 2, 3] and item["diff"]["n"] == 4
    assert item["diff"]["mean"] == pytest.approx(np.mean(e), abs=1e-12)
    assert (item["diff"]["low"], item["diff"]["high"]) == pytest.approx((low, high), abs=1e-12)
    expected = "larger" if low > 0 else "smaller" if high < 0 else "inside the noise"
    assert item["verdict"] == expected
    assert "## depth (interaction): larger deep?" in markdown(compare(results))
    results["interactions"][0]["subtrahend"] = "nope"
    with pytest.raises(ValueError, match=r"interactions\[0\].subtrahend: 'nope' is no claim"):
        compare(results)


def test_a_clear_interaction_is_larger_and_its_reverse_smaller():
    results = {
        "runs": arms_of(
            {
                "sf": BASE,
                "sa": BASE,
                "df": BASE,
                "da": [b + d for b, d in zip(BASE, [0.02, 0.021, 0.019, 0.02, 0.022], strict=True)],
            }
        ),
        "claims": [
            {"name": "shallow", "question": "", "baseline": "sf", "arms": ["sa"]},
            {"name": "deep", "question": "", "baseline": "df", "arms": ["da"]},
        ],
        "interactions": [
            {"name": "d", "question": "", "minuend": "deep", "subtrahend": "shallow"},
            {"name": "r", "question": "", "minuend": "shallow", "subtrahend": "deep"},
        ],
    }
    assert [i["verdict"] for i in compare(results)["interactions"]] == ["larger", "smaller"]


def test_an_interaction_of_a_claim_not_run_yet_is_pending():
    results = {
        "runs": arms_of({"sf": BASE, "sa": BASE, "df": BASE}),
        "claims": [
            {"name": "shallow", "question": "", "baseline": "sf", "arms": ["sa"]},
            {"name": "deep", "question": "", "baseline": "df", "arms": ["da"]},
        ],
        "interactions": [
            {"name": "d", "question": "q", "minuend": "deep", "subtrahend": "shallow"}
        ],
    }
    table = compare(results)
    (item,) = table["interactions"]
    assert item["pending"] and item["diff"] is None and item["verdict"] is None
    assert "Student t interval: not run yet." in markdown(table)
