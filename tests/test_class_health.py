"""Per-class collapse warnings: the checks, and the curriculum monitor's per-class records."""

import math

import pytest
import torch
from helpers import QUICKSTART

from sj_ext.app.class_health import (
    accuracy_warnings,
    class_rates,
    summed_class_rates,
    weight_warnings,
)
from sj_ext.app.monitor import Monitor
from sj_ext.loss import ConfidenceAwareLoss


def test_accuracy_collapse_is_flagged_only_past_chance():
    acc = [0.99, 0.98, 0.97, 0.99, 0.95, 0.96, 0.97, 0.98, 0.0, 0.96]
    (warning,) = accuracy_warnings(acc, "epoch 3: ")
    assert warning.startswith("epoch 3: class 8 has test accuracy 0.000")
    assert accuracy_warnings([0.1, 0.0, 0.12, 0.11]) == []  # nothing learned yet: no verdict
    assert accuracy_warnings([0.9, None, 0.85, float("nan")]) == []
    assert accuracy_warnings([0.9, 0.44, 0.85]) == [] and accuracy_warnings([0.9, 0.42, 0.85])


def test_weight_collapse_threshold():
    assert weight_warnings([1.2, 1.0, 0.34, None]) == []
    (warning,) = weight_warnings([1.2, 1.0, 0.3, None])
    assert "class 2 gets 0.30x its fair share" in warning


def _batch(C=4, per_class=8, starved=3):
    """Outputs ``[T, N, C]``: every sample right and confident except class ``starved``."""
    target = torch.arange(C).repeat_interleave(per_class)
    logits = torch.full((len(target), C), -4.0)
    logits[torch.arange(len(target)), target] = 4.0
    bad = target == starved
    logits[bad] = torch.full((C,), -4.0).index_fill(0, torch.tensor((starved + 1) % C), 4.0)
    return logits.expand(2, -1, -1).clone(), target


def test_curriculum_monitor_records_per_class_weight_and_accuracy():
    out, target = _batch()
    loss = ConfidenceAwareLoss(tau="fixed", lam=1.0)
    mon = Monitor(torch.nn.Identity(), loss=loss, names=["curriculum"], every=1)
    with mon.sample(1, 0, 1):
        loss(out, target)
    classes = mon.last["curriculum"]["classes"]
    sigma = loss.last_sigma.double()
    for c in range(4):
        mask = target == c
        share = float(sigma[mask].sum() / sigma.sum())
        assert classes["count"][c] == 8
        assert classes["weight_share"][c] == pytest.approx(share, rel=1e-5)
        assert classes["weight_ratio"][c] == pytest.approx(share / 0.25, rel=1e-5)
        assert classes["mean_sigma"][c] == pytest.approx(float(sigma[mask].mean()), rel=1e-5)
    assert classes["acc"] == [1.0, 1.0, 1.0, 0.0]
    # the starved class: sigma* of a confidently wrong sample is tiny, of a right one e
    assert classes["mean_sigma"][0] == pytest.approx(math.e, rel=1e-4)
    warnings = mon.class_warnings(1)
    assert any("class 3 gets" in w for w in warnings)
    assert any("class 3 has training accuracy 0.000" in w for w in warnings)
    assert mon.class_warnings(2) == []  # the sums were reset with the epoch


def test_no_warning_when_every_class_is_served():
    out, target = _batch(starved=-1)  # nobody starved
    loss = ConfidenceAwareLoss(tau="batch", lam=1.0)
    mon = Monitor(torch.nn.Identity(), loss=loss, names=["curriculum"], every=1)
    with mon.sample(1, 0, 1):
        loss(out, target)
    assert mon.last["curriculum"]["classes"]["acc"] == [1.0] * 4
    assert mon.class_warnings(1) == []


def test_summed_rates_pool_the_batches_not_their_ratios():
    records = [
        {"classes": class_rates([3, 1], [3 * math.e, 0.5], [3, 0])},
        {"classes": class_rates([1, 3], [math.e, 3 * 2.0], [1, 3])},
        {"epoch": 1},  # a record without per-class entries is ignored
    ]
    pooled = summed_class_rates(records)
    total = 4 * math.e + 6.5
    assert pooled["count"] == [4, 4] and pooled["correct"] == [4, 3]
    assert pooled["weight_share"][1] == pytest.approx(6.5 / total, rel=1e-5)
    assert pooled["weight_ratio"][1] == pytest.approx((6.5 / total) / 0.5, rel=1e-5)
    assert pooled["acc"] == [1.0, 0.75]
    assert summed_class_rates([{"epoch": 1}]) is None


def _starving_loss(num_classes: int):
    """CL-SNN's loss with class 3's samples made 'hard' by a constant: no gradient change,
    but sigma* ~ 0.03, so the class is starved exactly as the firing-rate trap starves one."""

    def base(out, target):
        ce = torch.nn.functional.cross_entropy(out.mean(0), target, reduction="none")
        return ce + 200.0 * (target == 3)

    return ConfidenceAwareLoss(base=base, tau="fixed", lam=1.0)


def test_a_starved_class_is_warned_in_the_training_log_and_the_report(tmp_path, monkeypatch):
    from sj_ext.app.components import LOSSES
    from sj_ext.app.engine import train
    from sj_ext.app.recipe import load_recipe
    from sj_ext.app.report import write_report

    monkeypatch.setitem(LOSSES._entries, "starving", _starving_loss)
    recipe = load_recipe(
        QUICKSTART,
        [
            "train.device=cpu",
            "train.epochs=3",
            "loss.name=starving",
            "loss.args={}",
            "monitor.every=1",
            "monitor.names=[curriculum]",
        ],
    )
    lines = []
    metrics = train(recipe, tmp_path, log=lines.append)
    per_class = metrics["final_per_class_acc"]
    assert per_class[3] < 0.5 * sorted(per_class)[5]  # the class really was not learned
    log = "\n".join(lines)
    assert "warning: epoch 3: class 3 has test accuracy" in log
    assert "warning: epoch 3 (sampled training batches): class 3 gets" in log
    report = write_report([tmp_path]).read_text()
    warnings = report.split("## Warnings", 1)[1].split("##", 1)[0]
    assert "class 3 has test accuracy" in warnings and "class 3 gets" in warnings
    assert (tmp_path / "report" / "classes.png").is_file()
