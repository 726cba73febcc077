import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from helpers import QUICKSTART
from spikingjelly.activation_based import functional, layer, neuron, surrogate

from sj_ext.app.energy import estimate_energy
from sj_ext.app.engine import runfolder, train
from sj_ext.app.monitor import MONITORS, Monitor, MonitorFileWarning, read_records
from sj_ext.app.recipe import RecipeError, load_recipe, resolve, safe_load
from sj_ext.functional import lif_multi_step
from sj_ext.loss import ConfidenceAwareLoss
from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF
from sj_ext.surrogate import DynamicRect

ALL = f"monitor.names=[{', '.join(MONITORS)}]"
SHORT = [
    "train.epochs=2",
    "train.limit_train_batches=3",
    "train.limit_eval_batches=2",
    "train.device=cpu",
]


def sampled(monitor, net, x_seq, loss=None, target=None, step_mode="m"):
    """One sampled batch: forward (and the loss), backward when possible; the records."""
    with monitor.sample(1, 0, 1):
        if step_mode == "m":
            out = net(x_seq)
        else:
            out = torch.stack([net(x) for x in x_seq])
        value = loss(out, target) if loss is not None else out.sum()
        if value.requires_grad:
            value.backward()
    records = monitor.last
    functional.reset_net(net)
    return records


# ------------------------------------------------------------------------------ firing rates
def if_net(step_mode: str) -> nn.Module:
    """IF (V_th 1) -> Linear(2 -> 1, weights 1) -> IF (V_th 1.5); hard reset to 0."""
    sg = surrogate.PiecewiseQuadratic(alpha=1.0)  # g'(z) = 1 - |z| on |z| < 1, else 0
    readout = layer.Linear(2, 1, bias=False, step_mode=step_mode)
    with torch.no_grad():
        readout.weight.fill_(1.0)
    return nn.Sequential(
        neuron.IFNode(v_threshold=1.0, surrogate_function=sg, step_mode=step_mode),
        readout,
        neuron.IFNode(v_threshold=1.5, surrogate_function=sg, step_mode=step_mode),
    )


# [T=3, N=2, 2]; by hand (h_t = u_{t-1} + x_t, spike when h >= V_th, reset to 0):
#   layer 0: h = [[1, .5], [0, 2]], [[0, 1], [1, 0]], [[1, .2], [0, 0]]
#            spikes 2/4, 2/4, 1/4; |h - 1| < 1 (non-zero surrogate): 2/4, 2/4, 2/4
#   layer 2: input (spike sums) [1, 1], [1, 1], [1, 0]; h = [1, 1], [2, 2], [1, 0]
#            spikes 0, 2/2, 0; |h - 1.5| < 1: 2/2, 2/2, 1/2
X_IF = torch.tensor([[[1.0, 0.5], [0.0, 2.0]], [[0.0, 0.5], [1.0, 0.0]], [[1.0, 0.2], [0.0, 0.0]]])


@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_firing_rate_and_gradient_reach_of_spikingjelly_neurons_by_hand(step_mode):
    # the fused SpikingJelly kernels never call the surrogate: gradient reach re-runs them
    net = if_net(step_mode)
    mon = Monitor(net, names=["firing_rate", "grad_reach", "threshold"], reach_eps=0.0)
    records = sampled(mon, net, X_IF, step_mode=step_mode)
    assert records["firing_rate"]["layers"] == {"0": [0.5, 0.5, 0.25], "2": [0.0, 1.0, 0.0]}
    assert records["grad_reach"]["layers"] == {"0": [0.5, 0.5, 0.5], "2": [1.0, 1.0, 0.5]}
    assert records["threshold"]["layers"] == {"0": {"train": [1.0] * 3}, "2": {"train": [1.5] * 3}}
    assert records["firing_rate"]["epoch"] == 1 and records["firing_rate"]["batch"] == 0
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def test_gradient_reach_epsilon_for_infinite_support():
    # atan: g'(z) = (alpha/2) / (1 + (pi alpha z / 2)^2); above eps * g'(0) iff
    # |z| < (2 / (pi alpha)) sqrt(1/eps - 1)
    node = neuron.IFNode(v_threshold=1.0, surrogate_function=surrogate.ATan(), step_mode="m")
    x = torch.tensor([1.0, 1.1, 1.7, 2.0, 0.0, -0.3]).view(1, 1, 6)  # z = x - 1
    eps = 0.5  # |z| < (1 / pi) * 1 = 0.318
    mon = Monitor(node, names=["grad_reach"], reach_eps=eps)
    records = sampled(mon, node, x)
    assert records["grad_reach"]["layers"][""] == [pytest.approx(2 / 6)]


# ------------------------------------------------------------------------ adaptive thresholds
def test_adaptive_thresholds_sigma_width_and_reach_by_hand():
    # h_t = 0.5 u_{t-1} + x_t (tau = 2, decay_input=False), V_th = mean(h) + std(h)
    node = AdaptiveThresholdLIF(tau=2.0, decay_input=False, step_mode="m")
    net = nn.Sequential(nn.Identity(), node)
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]]).view(2, 1, 4)
    mon = Monitor(net, names=["firing_rate", "threshold", "grad_reach"], reach_eps=0.01)
    records = sampled(mon, net, x.requires_grad_())

    def stats(h):
        mu = sum(h) / len(h)
        return mu, math.sqrt(sum((v - mu) ** 2 for v in h) / (len(h) - 1))

    h0 = [0.0, 1.0, 2.0, 3.0]
    mu0, s0 = stats(h0)
    th0 = mu0 + s0  # 2.79: only h = 3 fires, and resets to 0
    u0 = [v if v < th0 else 0.0 for v in h0]
    h1 = [0.5 * u + 1.0 for u in u0]
    mu1, s1 = stats(h1)
    th1 = mu1 + s1
    width = [1.0 + math.tanh(s - 1.0) for s in (s0, s1)]  # DynamicRect, a0 = v0 = 1
    reach = [
        sum(abs(v - th) < a / 2 for v in h) / 4
        for h, th, a in ((h0, th0, width[0]), (h1, th1, width[1]))
    ]
    rate = [sum(v >= th for v in h) / 4 for h, th in ((h0, th0), (h1, th1))]
    entry = records["threshold"]["layers"]["1"]
    approx = lambda v: pytest.approx(v, rel=1e-5)  # noqa: E731
    assert entry["train"] == approx([th0, th1])
    assert entry["running"] == approx([0.9 + 0.1 * th0, 0.9 + 0.1 * th1])  # from 1.0, m = 0.1
    assert entry["sigma"] == approx([s0, s1])
    assert entry["width"] == approx(width)
    assert records["firing_rate"]["layers"]["1"] == approx(rate)
    assert records["grad_reach"]["layers"]["1"] == approx(reach)
    assert reach == [0.25, 0.25] and rate == [0.25, 0.25]


def test_gradient_reach_of_sj_ext_neurons_run_by_a_fused_kernel():
    # a stand-in for backend='cupy': the same maths, without calling the hooked surrogate
    x = torch.randn(4, 8, 3, 5)
    plain = AdaptiveThresholdLIF(step_mode="m")
    fused = AdaptiveThresholdLIF(step_mode="m", backend="cupy")

    def stand_in(x_seq, v, t0):
        thresholds, params = fused._sequence_inputs(x_seq, t0)
        params = replace(params, surrogate_function=DynamicRect())
        return lif_multi_step(x_seq, v, fused.k, thresholds, params)

    fused._fused_multi_step = stand_in
    reach = []
    for node in (plain, fused):
        mon = Monitor(node, names=["grad_reach", "firing_rate"])
        reach.append(sampled(mon, node, x)["grad_reach"]["layers"][""])
    assert len(reach[1]) == 4 and reach[0] == reach[1]
    assert fused.running_threshold.equal(plain.running_threshold)  # re-run: no second update


def test_thresholds_per_channel_are_averaged_over_channels():
    node = AdaptiveThresholdLIF(stats="channel", step_mode="m")
    mon = Monitor(node, names=["threshold"])
    x = torch.randn(3, 4, 2, 5)
    records = sampled(mon, node, x)
    assert node.threshold_seq is None  # reset after the batch
    train_th = records["threshold"]["layers"][""]["train"]
    assert len(train_th) == 3
    x0 = x[0]
    mu = x0.mean(dim=(0, 2))
    sd = x0.std(dim=(0, 2))  # decay_input=True, tau=2: h_0 = x_0 / 2
    assert train_th[0] == pytest.approx(((mu + sd) / 2).mean().item(), rel=1e-5)


# ----------------------------------------------------------------------------- group rates
@pytest.mark.parametrize(
    "window,expected", [("dilated", [1.0, 0.5, 0.0, 0.5]), ("block", [0.5, 1.0, 0.0, 0.5])]
)
def test_firing_rate_per_group_by_hand(window, expected):
    # plain LIF groups (projection 'none'); x = 4 -> h = 2 >= 1 fires, x = 0 stays silent
    pattern = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])  # [H=2, W=4]
    x = torch.stack([4 * pattern, torch.zeros(2, 4)]).view(2, 1, 1, 2, 4)  # [T, N, C, H, W]
    node = DilatedWindowLIF(groups=(2, 2), window=window, projection="none", step_mode="m")
    mon = Monitor(node, names=["group_rate", "firing_rate"])
    records = sampled(mon, node, x)
    entry = records["group_rate"]["layers"][""]
    assert entry["groups"] == [2, 2] and entry["window"] == window
    assert entry["rate"] == [expected, [0.0] * 4]
    assert records["firing_rate"]["layers"][""] == [0.5, 0.0]


# ------------------------------------------------------------------------------ curriculum
def test_curriculum_weights_by_hand():
    # sigma* = exp(-W0(beta / 2)), beta = (l - tau) / lam: choose W0 = w, l = tau + 2 lam w e^w
    tau, ws = 1.0, [-1.0, -0.5, 0.5, 1.0]
    losses = torch.tensor([tau + 2 * w * math.exp(w) for w in ws], dtype=torch.float64)
    crit = ConfidenceAwareLoss(base=lambda input, target: losses, tau=tau, lam=1.0)
    net = nn.Identity()
    mon = Monitor(net, loss=crit, names=["curriculum"])
    records = sampled(mon, net, torch.zeros(1, 4, 3), loss=crit, target=None)
    rec = records["curriculum"]
    sigma = [math.exp(-w) for w in ws]  # e, e^.5 (easy: l < tau), e^-.5, e^-1 (hard)
    assert rec["tau"] == pytest.approx(tau)
    assert rec["loss"] == pytest.approx(losses.tolist(), rel=1e-5)
    assert rec["sigma"] == pytest.approx(sigma, rel=1e-5)
    assert (rec["easy"], rec["hard"]) == (2, 2)
    assert rec["weight_easy"] == pytest.approx(sum(sigma[:2]) / sum(sigma), rel=1e-5)
    assert rec["mean_sigma_easy"] == pytest.approx(sum(sigma[:2]) / 2, rel=1e-5)
    assert rec["mean_sigma_hard"] == pytest.approx(sum(sigma[2:]) / 2, rel=1e-5)


# ---------------------------------------------------------------------------------- energy
def test_energy_against_a_hand_count():
    fc1 = layer.Linear(4, 3, bias=False, step_mode="m")
    fc2 = layer.Linear(3, 2, bias=False, step_mode="m")
    with torch.no_grad():
        fc1.weight.copy_(2 * torch.eye(3, 4))  # h = 2 x[:3] (weights not binary)
        fc2.weight.fill_(0.5)
    net = nn.Sequential(fc1, neuron.IFNode(step_mode="m"), fc2)
    # step 0: h = [1.5, .3, 2] -> spikes [1, 0, 1]; step 1: h = [.5, .8, .5] -> none
    x = torch.tensor([[0.75, 0.15, 1.0, 0.7], [0.25, 0.25, 0.25, 0.25]]).view(2, 1, 4)
    x = x.expand(2, 3, 4)  # 3 identical samples: counts are per inference
    e = estimate_energy(net, x)
    snn_mac = 2 * 4 * 3  # T steps x fan-in x outputs of the real-valued first layer
    snn_ac = 2 * 2  # 2 spikes x fan-out 2
    ann_mac = 4 * 3 + 3 * 2  # one pass, every synapse
    assert (e["samples"], e["T"]) == (3, 2)
    spikes = 2  # two spikes at step 0, none at step 1, per sample
    assert e["snn"] == {
        "mac": snn_mac, "ac": snn_ac, "energy_pj": pytest.approx(114.0), "spikes": spikes
    }  # fmt: skip
    assert e["ann"] == {"mac": ann_mac, "energy_pj": pytest.approx(4.6 * 18)}
    assert e["ann_over_snn"] == pytest.approx(4.6 * 18 / (4.6 * 24 + 0.9 * 4))
    assert e["layers"] == {
        "0": {"snn_mac": 24, "snn_ac": 0, "ann_mac": 12},
        "2": {"snn_mac": 0, "snn_ac": 4, "ann_mac": 6},
    }
    assert "4.6 pJ per MAC, 0.9 pJ per AC" in e["assumptions"][0]
    assert net.training and net[1].v == 0.0  # mode restored, state reset


def test_energy_counts_convolutions_densely_for_the_ann():
    net = nn.Sequential(
        layer.Conv2d(1, 2, 3, padding=1, step_mode="m"),
        layer.BatchNorm2d(2, step_mode="m"),
        neuron.LIFNode(step_mode="m"),
    )
    e = estimate_energy(net, torch.randn(3, 2, 1, 4, 4))
    assert e["ann"]["mac"] == 2 * 4 * 4 * 9  # output elements x fan-in; BN folded
    assert e["snn"]["mac"] == 3 * 2 * 4 * 4 * 9 and e["snn"]["ac"] == 0


# ------------------------------------------------------------------------------ sampling
def test_sampling_every_n_batches_attaches_hooks_only_then():
    net = if_net("m")
    mon = Monitor(net, names=["firing_rate"], every=3)
    assert [mon.begin(1, i, 10) for i in (1, 2)] == [False, False]
    assert not any(m._forward_hooks for m in net.modules())
    assert mon.begin(1, 3, 10)
    assert any(m._forward_hooks for m in net.modules())
    net(X_IF)
    assert mon.end()["firing_rate"]["progress"] == pytest.approx(0.3)
    assert not any(m._forward_hooks for m in net.modules())


def test_monitor_arguments_are_checked():
    with pytest.raises(ValueError, match="unknown monitor"):
        Monitor(nn.Identity(), names=["firing_rat"])
    with pytest.raises(ValueError, match="every"):
        Monitor(nn.Identity(), every=0)


def test_recipe_monitor_section_is_validated():
    raw = safe_load(QUICKSTART.read_text())
    raw.pop("monitor", None)
    assert resolve(raw)["monitor"] == {  # off by default
        "every": None,
        "names": list(MONITORS),
        "reach_eps": 0.01,
    }
    with pytest.raises(RecipeError) as err:
        load_recipe(QUICKSTART, ["monitor.names=[firing_rat, energy]"])
    msg = str(err.value)
    assert "monitor.names: must be one of" in msg and "(did you mean 'firing_rate'?)" in msg
    with pytest.raises(RecipeError, match=r"monitor.every: must be >= 1 or null \(off\), got 0"):
        load_recipe(QUICKSTART, ["monitor.every=0"])
    with pytest.raises(RecipeError, match=r"monitor.reach_eps: must lie in \[0, 1\), got 1"):
        load_recipe(QUICKSTART, ["monitor.reach_eps=1"])
    with pytest.raises(RecipeError, match="monitor.evry: unknown key"):
        load_recipe(QUICKSTART, ["monitor.evry=3"])


# ------------------------------------------------------------------------ files and resume
def test_read_records_skips_a_partial_last_line_and_warns_of_a_corrupt_one(tmp_path):
    path = tmp_path / "firing_rate.jsonl"
    path.write_text('{"epoch": 1, "layers": {}}\n{"epoch": 2, "lay')
    assert read_records(path) == [{"epoch": 1, "layers": {}}]
    path.write_bytes(
        b'{"epoch": 1}\n{"epoch": 2, "lay\n\xff\xfe\n[3]\n{"epoch": "4"}\n{"epoch": 5}\n'
    )
    with pytest.warns(MonitorFileWarning) as caught:
        assert read_records(path) == [{"epoch": 1}, {"epoch": 5}]
    assert [str(w.message) for w in caught] == [
        f"{path} line 2: not valid JSON (Unterminated string starting at); skipped",
        f"{path} line 3: not valid JSON (Expecting value); skipped",
        f"{path} line 4: not a monitor record (no integer 'epoch'); skipped",
        f"{path} line 5: not a monitor record (no integer 'epoch'); skipped",
    ]


def records_of(out: Path) -> dict:
    return {p.name: read_records(p) for p in sorted((out / "monitor").glob("*.jsonl"))}


def without_time(metrics):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in metrics["epochs"]]


@pytest.fixture(scope="module")
def plain_and_monitored(tmp_path_factory):
    quiet = dict(log=lambda *a: None)
    plain_dir, mon_dir = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("monitored")
    plain = train(load_recipe(QUICKSTART, [*SHORT, "monitor.every=null"]), plain_dir, **quiet)
    monitored = train(load_recipe(QUICKSTART, [*SHORT, "monitor.every=2", ALL]), mon_dir, **quiet)
    return plain_dir, plain, mon_dir, monitored


def test_monitors_do_not_change_the_run(plain_and_monitored):
    plain_dir, plain, mon_dir, monitored = plain_and_monitored
    assert without_time(plain) == without_time(monitored)
    a = torch.load(plain_dir / "checkpoints" / "latest.pt", weights_only=False)["model"]
    b = torch.load(mon_dir / "checkpoints" / "latest.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (plain_dir / "monitor").exists()  # off: nothing recorded
    files = records_of(mon_dir)
    assert set(files) == {f"{n}.jsonl" for n in MONITORS} - {"group_rate.jsonl"}
    for name, records in files.items():  # batches 0 and 2 of 3, in epochs 1 and 2
        if name == "energy.jsonl":  # once per epoch
            assert [r["epoch"] for r in records] == [1, 2]
        else:
            assert [(r["epoch"], r["batch"]) for r in records] == [(1, 0), (1, 2), (2, 0), (2, 2)]


class Crash(Exception):
    pass


def test_resume_drops_the_records_of_epochs_run_again(tmp_path, monkeypatch, plain_and_monitored):
    _, _, mon_dir, monitored = plain_and_monitored
    recipe = load_recipe(QUICKSTART, [*SHORT, "monitor.every=2", ALL])
    out = tmp_path / "run"
    real_save = runfolder.save_checkpoint

    def save_or_crash(path, state, **kwargs):  # dies before the checkpoint of epoch 2 is written
        if state["epoch"] == 2:
            raise Crash
        real_save(path, state, **kwargs)

    monkeypatch.setattr(runfolder, "save_checkpoint", save_or_crash)
    with pytest.raises(Crash):
        train(recipe, out, log=lambda *a: None)
    monkeypatch.undo()
    crashed = records_of(out)
    assert {r["epoch"] for records in crashed.values() for r in records} == {1, 2}
    rates = out / "monitor" / "firing_rate.jsonl"
    lines = rates.read_text().splitlines(keepends=True)
    lines.insert(1, "#garbage\n")  # a damaged middle line: a warning, not a refusal
    rates.write_text("".join(lines) + '{"epoch": 2, "batch": 4, "lay')  # half written when it died
    with pytest.warns(MonitorFileWarning, match=f"{rates} line 2: not valid JSON"):
        resumed = train(recipe, out, resume=True, log=lambda *a: None)
    assert without_time(resumed) == without_time(monitored)
    assert records_of(out) == records_of(mon_dir)  # epoch 2 once, as in an uninterrupted run


def test_a_fresh_run_drops_records_left_by_a_run_that_never_checkpointed(tmp_path):
    out = tmp_path / "run"
    (out / "monitor").mkdir(parents=True)
    (out / "monitor" / "firing_rate.jsonl").write_text('{"epoch": 1, "batch": 7}\n')
    sets = ["train.epochs=1", "train.limit_train_batches=1", "train.device=cpu"]
    recipe = load_recipe(QUICKSTART, [*sets, "monitor.every=1", "monitor.names=[firing_rate]"])
    train(recipe, out, log=lambda *a: None)
    assert [r["batch"] for r in read_records(out / "monitor" / "firing_rate.jsonl")] == [0]
