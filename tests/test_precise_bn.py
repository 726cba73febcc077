"""train.precise_bn: after the last epoch, every BatchNorm's running statistics are
re-estimated over a fixed set of training batches before the final evaluation."""

import copy

import pytest
import torch
from helpers import QUICKSTART
from spikingjelly.activation_based import functional, layer

import sj_ext.app.engine.trainer as trainer
from sj_ext.app.engine import Preempted, train
from sj_ext.app.engine.checkpoint import load_checkpoint
from sj_ext.app.engine.precise_bn import batch_norms, recompute_batch_norm
from sj_ext.app.recipe import RecipeError, load_recipe
from sj_ext.neuron import AdaptiveThresholdLIF

QUIET = dict(log=lambda *a: None)
SHORT = ["train.device=cpu", "train.limit_train_batches=3", "monitor.every=null"]


def _net() -> torch.nn.Module:
    net = torch.nn.Sequential(
        layer.BatchNorm2d(3),
        AdaptiveThresholdLIF(tau=1.25, decay_input=False),
        layer.Conv2d(3, 4, 3, padding=1, bias=False),
        layer.BatchNorm2d(4, momentum=0.3),
        AdaptiveThresholdLIF(tau=1.25, decay_input=False),
    )
    functional.set_step_mode(net, "m")
    return net


def _inputs_of(module: torch.nn.Module, net: torch.nn.Module, batches) -> list[torch.Tensor]:
    """What ``module`` receives in a train-mode pass over ``batches``, flattened to
    ``[T * N, C, H, W]`` (a multi-step BatchNorm's batch)."""
    seen = []
    hook = module.register_forward_hook(lambda m, args, out: seen.append(args[0].flatten(0, 1)))
    net.train()
    with torch.no_grad():
        for x in batches:
            net(x)
            functional.reset_net(net)
    hook.remove()
    return seen


def _direct_stats(inputs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean over batches of each batch's per-channel mean and unbiased variance."""
    means = [x.double().mean((0, 2, 3)) for x in inputs]
    variances = [x.double().var((0, 2, 3), unbiased=True) for x in inputs]
    return torch.stack(means).mean(0), torch.stack(variances).mean(0)


def test_stale_statistics_are_repaired_to_the_average_over_the_batches():
    torch.manual_seed(0)
    net = _net()
    batches = [torch.randn(2, 5, 3, 6, 6) * 3 + 1.5 for _ in range(4)]
    net.train()
    for x in batches[:2]:  # the neurons' running thresholds get values
        net(x)
        functional.reset_net(net)
    net.eval()
    for bn in batch_norms(net):  # deliberately stale
        bn.running_mean.fill_(7.0)
        bn.running_var.fill_(0.01)
    thresholds = [net[1].running_threshold.clone(), net[4].running_threshold.clone()]
    reference = copy.deepcopy(net)
    expected = [_direct_stats(_inputs_of(reference[i], reference, batches[:3])) for i in (0, 3)]

    def forward(x):
        net(x)
        functional.reset_net(net)

    used = recompute_batch_norm(net, batches, forward, limit=3)

    assert used == 3
    for i, (mean, var) in zip((0, 3), expected, strict=True):
        torch.testing.assert_close(net[i].running_mean.double(), mean, rtol=0, atol=1e-6)
        torch.testing.assert_close(net[i].running_var.double(), var, rtol=0, atol=1e-6)
        assert int(net[i].num_batches_tracked) == 3
    assert net[0].momentum == 0.1 and net[3].momentum == 0.3  # restored
    assert not net.training  # back in the mode it was in
    torch.testing.assert_close(net[1].running_threshold, thresholds[0], rtol=0, atol=0)
    torch.testing.assert_close(net[4].running_threshold, thresholds[1], rtol=0, atol=0)


def test_a_model_without_batch_norm_is_left_alone():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    before = copy.deepcopy(net.state_dict())
    assert recompute_batch_norm(net, [torch.randn(4, 3)], net, limit=5) == 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def test_the_engine_re_estimates_before_the_final_test_and_resumes_exactly(tmp_path, monkeypatch):
    sets = [*SHORT, "train.epochs=2", "train.precise_bn=2"]
    whole = train(load_recipe(QUICKSTART, sets), tmp_path / "whole", **QUIET)
    rows = whole["epochs"]
    assert "precise_bn_batches" not in rows[0] and rows[-1]["precise_bn_batches"] == 2

    # the same weights with the statistics training left: the pass changes them
    plain = train(load_recipe(QUICKSTART, sets[:-1]), tmp_path / "plain", **QUIET)
    assert _without_time(plain["epochs"])[0] == _without_time(rows)[0]
    states = [
        load_checkpoint(tmp_path / r / "checkpoints/latest.pt")["model"] for r in ("whole", "plain")
    ]
    norms = [k for k in states[0] if k.endswith("running_mean")]
    assert norms and not any(torch.equal(states[0][k], states[1][k]) for k in norms)

    # stopped during the pass: the last epoch is dropped, and redone alike on resume
    real = trainer.recompute_batch_norm

    def stopped(*args, **kwargs):
        monkeypatch.setattr(trainer, "recompute_batch_norm", real)
        raise Preempted("stopped by SIGTERM during the BatchNorm pass", 15)

    monkeypatch.setattr(trainer, "recompute_batch_norm", stopped)
    with pytest.raises(Preempted):
        train(load_recipe(QUICKSTART, sets), tmp_path / "cut", **QUIET)
    resumed = train(load_recipe(QUICKSTART, sets), tmp_path / "cut", resume=True, **QUIET)
    assert _without_time(resumed["epochs"]) == _without_time(rows)
    cut = load_checkpoint(tmp_path / "cut/checkpoints/latest.pt")["model"]
    assert _same_state(cut, states[0])


def test_precise_bn_must_be_a_positive_count():
    with pytest.raises(RecipeError, match=r"train.precise_bn: must be >= 1 or null \(off\)"):
        load_recipe(QUICKSTART, ["train.precise_bn=0"])
