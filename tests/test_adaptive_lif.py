import copy
import math
import subprocess
import sys
import warnings

import pytest
import torch
from helpers.half_reference import assert_gradient_near_float32
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from spikingjelly.activation_based.model import parametric_lif_net

from sj_ext.functional import LIFParameters
from sj_ext.neuron import AdaptiveThresholdLIF
from sj_ext.surrogate import DynamicATan, DynamicRect

DT = torch.float64


# ----------------------------------------------------------------------------------------------
# An independent re-statement of DS-ATGO (docs/methods.md, DS-ATGO), written from the paper's
# equations.
def paper_forward(x_seq, running, *, k, decay_input, v_reset, f_c, a0, v0, training, momentum):
    """Plain loop; the rectangular surrogate as a straight-through clamp. Returns spikes,
    the updated running thresholds (a new list) and the per-step thresholds."""
    u = torch.zeros_like(x_seq[0]) if v_reset is None else torch.full_like(x_seq[0], v_reset)
    rest = 0.0 if v_reset is None else v_reset
    running = list(running)
    spikes, thresholds = [], []
    for t, x in enumerate(x_seq):
        if decay_input:
            h = u + k * (x - (u - rest))
        else:
            h = (1 - k) * u + k * rest + x
        hd = h.detach()
        n = hd.numel()
        mu = hd.sum() / n
        sigma = torch.sqrt(((hd - mu) ** 2).sum() / (n - 1))
        if training:
            v_th = f_c * (mu + sigma)
            running[t] = (1 - momentum) * running[t] + momentum * v_th.item()
        else:
            v_th = torch.tensor(running[t], dtype=h.dtype)
        a = a0 * (1 + math.tanh(sigma.item() - v0))
        z = h - v_th
        g = torch.clamp(z / a + 0.5, 0.0, 1.0)  # derivative: 1/a inside |z| < a/2
        s = (z >= 0).to(h.dtype) + (g - g.detach())
        u = h - v_th * s if v_reset is None else h * (1 - s) + v_reset * s
        spikes.append(s)
        thresholds.append(v_th.item())
    return torch.stack(spikes), running, thresholds


UPSTREAM = dict(tau=1.25, decay_input=False, v_reset=0.0)  # h = 0.2 u + x, hard reset to 0
SOFT = dict(tau=2.0, decay_input=True, v_reset=None)


@pytest.mark.parametrize("cfg", [UPSTREAM, SOFT], ids=["upstream", "soft-decay-input"])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_parity_with_paper_equations(cfg, step_mode):
    torch.manual_seed(0)
    T, momentum = 3, 0.1
    node = AdaptiveThresholdLIF(**cfg, momentum=momentum, step_mode=step_mode).to(DT)
    running = [1.0] * T
    k = 1.0 / cfg["tau"]
    kw = dict(k=k, decay_input=cfg["decay_input"], v_reset=cfg["v_reset"], f_c=1.0, a0=1.0, v0=1.0)

    def run(x):
        functional.reset_net(node)
        return node(x) if step_mode == "m" else torch.stack([node(xt) for xt in x])

    for _ in range(4):  # several training steps: the running thresholds accumulate
        x = (1.5 * torch.randn(T, 6, 5, dtype=DT)).requires_grad_(True)
        s = run(x)
        x_ref = x.detach().clone().requires_grad_(True)
        s_ref, running, thresholds = paper_forward(
            x_ref, running, training=True, momentum=momentum, **kw
        )
        assert torch.equal(s, s_ref)
        torch.testing.assert_close(node.threshold_seq, torch.tensor(thresholds, dtype=DT))
        torch.testing.assert_close(node.running_threshold, torch.tensor(running, dtype=DT))
        w = torch.randn_like(s)  # a loss that weights every spike differently
        (g,) = torch.autograd.grad((s * w).sum(), x)
        (g_ref,) = torch.autograd.grad((s_ref * w).sum(), x_ref)
        assert g.abs().sum() > 0
        torch.testing.assert_close(g, g_ref)

    node.eval()
    x = 1.5 * torch.randn(T, 6, 5, dtype=DT)
    s_ref, running_after, thresholds = paper_forward(
        x, running, training=False, momentum=momentum, **kw
    )
    assert running_after == running
    assert torch.equal(run(x), s_ref)
    torch.testing.assert_close(node.threshold_seq, torch.tensor(thresholds, dtype=DT))


def test_channel_statistics_are_per_channel():
    torch.manual_seed(1)
    node = AdaptiveThresholdLIF(stats="channel", step_mode="m", f_c=0.9)
    x = torch.randn(2, 4, 3, 5, 5) * torch.tensor([0.5, 1.0, 2.0])[:, None, None]
    node(x)
    h0 = x[0] / 2.0  # first step from rest: h = x / tau
    h0 = h0.transpose(0, 1).reshape(3, -1)
    expected = 0.9 * (h0.mean(1) + h0.std(1))
    assert node.threshold_seq.shape == (2, 3)
    torch.testing.assert_close(node.threshold_seq[0], expected)
    torch.testing.assert_close(node.sigma_seq[0], h0.std(1))
    torch.testing.assert_close(node.running_threshold[0], 0.9 * 1.0 + 0.1 * expected)
    torch.testing.assert_close(node.width_seq, DynamicRect().width(node.sigma_seq))


# ----------------------------------------------------------------------------------------------
# With adaptation off the node is SpikingJelly's LIF / PLIF.
@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("detach_reset", [False, True])
@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("learnable", [False, True])
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_equals_spikingjelly_lif_when_not_adaptive(
    v_reset, detach_reset, decay_input, learnable, step_mode
):
    torch.manual_seed(2)
    kw = dict(
        decay_input=decay_input,
        v_threshold=0.8,
        v_reset=v_reset,
        surrogate_function=surrogate.Sigmoid(alpha=3.0),
        detach_reset=detach_reset,
        step_mode=step_mode,
    )
    ours = AdaptiveThresholdLIF(tau=3.0, learnable_tau=learnable, threshold="fixed", **kw)
    ref = neuron.ParametricLIFNode(init_tau=3.0, **kw) if learnable else neuron.LIFNode(3.0, **kw)
    x = torch.randn(6, 4, 7)
    outs, grads = [], []
    for node in (ours, ref):
        xi = x.clone().requires_grad_(True)
        s = node(xi) if step_mode == "m" else torch.stack([node(xt) for xt in xi])
        loss = (s * torch.linspace(-1, 1, 7)).sum() + (node.v**2).sum()
        params = [xi] + list(node.parameters())
        grads.append(torch.autograd.grad(loss, params))
        outs.append(s)
    assert torch.equal(outs[0], outs[1])
    assert outs[0].sum() > 0
    for g, g_ref in zip(*grads, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# 's' and 'm' (the fused multi-step path) agree: forward, records, buffers and every gradient.
@pytest.mark.parametrize(
    "cfg",
    [
        dict(),
        dict(tau=1.25, decay_input=False, learnable_tau=True),
        dict(v_reset=None, stats="channel", surrogate_function=DynamicATan()),
        dict(learnable_tau=True, detach_reset=True, surrogate_function=surrogate.ATan()),
        dict(v_reset=None, learnable_tau=True, decay_input=False, f_c=0.7),
    ],
)
def test_single_and_multi_step_agree(cfg):
    torch.manual_seed(3)
    x = torch.randn(5, 3, 4, 6, 6, dtype=DT)
    v_weight = torch.randn(3, 4, 6, 6, dtype=DT)
    results = []
    for mode in ("s", "m"):
        node = AdaptiveThresholdLIF(**cfg, step_mode=mode).to(DT)
        xi = x.clone().requires_grad_(True)
        for _ in range(2):  # a second batch runs on trained running thresholds' state
            functional.reset_net(node)
            s = node(xi) if mode == "m" else torch.stack([node(xt) for xt in xi])
        loss = (s * torch.linspace(-1, 2, 6, dtype=DT)).sum() + (node.v * v_weight).sum()
        grads = torch.autograd.grad(loss, [xi] + list(node.parameters()))
        records = (node.threshold_seq, node.sigma_seq, node.running_threshold)
        results.append((s, node.v, *records, grads))
    (s_s, v_s, th_s, sg_s, run_s, g_s), (s_m, v_m, th_m, sg_m, run_m, g_m) = results
    assert torch.equal(s_s, s_m)
    for a, b in [
        (v_s, v_m),
        (th_s, th_m),
        (sg_s, sg_m),
        (run_s, run_m),
        *zip(g_s, g_m, strict=True),
    ]:
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_multi_step_in_chunks_continues_the_sequence():
    torch.manual_seed(4)
    x = torch.randn(6, 8, 10)
    whole = AdaptiveThresholdLIF(step_mode="m")
    chunked = copy.deepcopy(whole)
    s = whole(x)
    s_chunks = torch.cat([chunked(x[:2]), chunked(x[2:])])
    assert torch.equal(s, s_chunks)
    torch.testing.assert_close(whole.running_threshold, chunked.running_threshold)
    torch.testing.assert_close(whole.threshold_seq, chunked.threshold_seq)


def test_spiking_false_surrogate_runs_stepwise_through_autograd():
    torch.manual_seed(5)
    x = torch.randn(3, 4, 9, dtype=DT, requires_grad=True)
    node = AdaptiveThresholdLIF(surrogate_function=DynamicRect(spiking=False), step_mode="m")
    y = node.to(DT)(x)
    assert ((y > 0) & (y < 1)).any()  # the primitive, not spikes
    (g,) = torch.autograd.grad(y.sum(), x)
    assert g.abs().sum() > 0


# ----------------------------------------------------------------------------------------------
def test_state_dict_round_trip_into_fresh_model():
    def build():
        net = torch.nn.Sequential(
            layer.Linear(12, 16),
            AdaptiveThresholdLIF(stats="channel"),
            layer.Linear(16, 4),
            AdaptiveThresholdLIF(learnable_tau=True),
        )
        functional.set_step_mode(net, "m")
        return net

    torch.manual_seed(6)
    net = build()
    for _ in range(3):
        net(torch.randn(4, 8, 12))
        functional.reset_net(net)
    fresh = build()
    state = net.state_dict()
    assert state["1.running_threshold"].shape == (4, 16)
    assert state["3.running_threshold"].shape == (4,)
    fresh.load_state_dict(state)
    net.eval()
    fresh.eval()
    x = torch.randn(4, 5, 12)
    assert torch.equal(net(x), fresh(x))
    torch.testing.assert_close(fresh[3].running_threshold, net[3].running_threshold)
    assert not torch.equal(net[3].running_threshold, torch.ones(4))


@pytest.mark.parametrize("stats", ["layer", "channel"])
@pytest.mark.parametrize("step_mode", ["m", "s"])
def test_an_untrained_node_evaluates_as_a_lif_node_at_v_threshold(stats, step_mode):
    kw = dict(v_threshold=0.4, v_reset=0.0, decay_input=True, step_mode=step_mode)
    ours = AdaptiveThresholdLIF(tau=2.0, stats=stats, **kw).eval()
    ref = neuron.LIFNode(2.0, **kw)
    x = torch.rand(6, 4, 3, 5)  # [T, N, C, L]
    outs = [
        node(x) if step_mode == "m" else torch.stack([node(xt) for xt in x]) for node in (ours, ref)
    ]
    assert torch.equal(outs[0], outs[1])
    assert 0 < outs[0].mean() < 1
    assert ours.threshold_seq.shape == ((6,) if stats == "layer" else (6, 3))
    assert torch.all(ours.threshold_seq == torch.tensor(0.4))


def test_eval_beyond_the_trained_steps_reuses_the_last_one_and_warns_once():
    node = AdaptiveThresholdLIF(step_mode="m")
    node(torch.randn(3, 2, 7))  # trains running thresholds for T = 3
    trained = node.running_threshold.clone()
    assert len(set(trained.tolist())) == 3
    node.eval()
    functional.reset_net(node)
    x = torch.randn(5, 2, 7)
    with pytest.warns(
        RuntimeWarning, match="for 3 time steps.*steps >= 3 use the threshold of step 2"
    ):
        spikes = node(x)
    assert node.threshold_seq.tolist() == trained[[0, 1, 2, 2, 2]].tolist()
    extended = AdaptiveThresholdLIF(step_mode="m").eval()  # a buffer that holds the 5 steps
    extended.running_threshold = trained[[0, 1, 2, 2, 2]]
    assert torch.equal(spikes, extended(x))
    functional.reset_net(node)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: the second evaluation is silent
        node(x)


def test_reset_net_clears_state_and_records():
    node = AdaptiveThresholdLIF(step_mode="s")
    for _ in range(3):
        node(torch.randn(2, 5))
    assert node.time_step == 3 and node.threshold_seq.shape == (3,)
    functional.reset_net(node)
    assert node.time_step == 0 and node.threshold_seq is None and node.v == 0.0
    assert node.running_threshold.shape == (3,)  # learned state survives reset


# ----------------------------------------------------------------------------------------------
def test_drops_into_spikingjelly_model():
    torch.manual_seed(7)
    net = parametric_lif_net.MNISTNet(
        channels=4,
        spiking_neuron=AdaptiveThresholdLIF,
        tau=1.25,
        decay_input=False,
        learnable_tau=True,
    )
    functional.set_step_mode(net, "m")
    x = torch.rand(3, 2, 1, 28, 28)
    out = net(x)
    assert out.shape == (3, 2, 10)
    nodes = [m for m in net.modules() if isinstance(m, AdaptiveThresholdLIF)]
    assert len(nodes) == 4 and all(n.running_threshold.shape == (3,) for n in nodes)
    out.sum().backward()
    assert all(n.w.grad is not None for n in nodes)


def test_the_node_hands_its_attributes_to_the_functions_in_one_object():
    node = AdaptiveThresholdLIF(tau=3.0, v_reset=None, stats="channel", detach_reset=True)
    node.f_c = 0.7  # an attribute changed after construction takes effect
    assert node.lif_parameters((2, 5)) == LIFParameters(
        decay_input=True,
        v_reset=None,
        surrogate_function=node.surrogate_function,
        detach_reset=True,
        f_c=0.7,
        stats="channel",
    )


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(tau=1.0), ValueError, "tau"),
        (dict(tau=0.5, learnable_tau=True), ValueError, "tau"),
        (dict(stats="batch"), ValueError, "stats"),
        (dict(backend="triton"), ValueError, "backend"),
        (dict(momentum=1.5), ValueError, "momentum"),
        (dict(step_mode="x"), ValueError, "step_mode"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        AdaptiveThresholdLIF(**kwargs)


@pytest.mark.parametrize(
    "step_mode,stats,shape",
    [("m", "layer", (5,)), ("m", "channel", (4, 3)), ("s", "channel", (3,))],
)
def test_wrong_input_rank_names_the_shape(step_mode, stats, shape):
    node = AdaptiveThresholdLIF(step_mode=step_mode, stats=stats)
    with pytest.raises(ValueError, match=str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")):
        node(torch.randn(*shape))


def test_import_does_not_need_torchaudio():
    code = (
        "import sys; sys.modules['torchaudio'] = None\n"
        "import sj_ext, sj_ext.neuron, sj_ext.surrogate, sj_ext.functional, sj_ext.loss\n"
        "import sj_ext.app.recipe, sj_ext.app.engine, sj_ext.app.cli\n"
        "import sj_ext.app.monitor, sj_ext.app.report\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_half_precision_statistics_are_reduced_in_float32():
    from sj_ext.functional import membrane_stats

    torch.manual_seed(8)
    h = torch.randn(200, 1000)  # 200k elements: a float16 sum of squares would overflow
    for dtype in (torch.float16, torch.bfloat16):
        mu, sigma = membrane_stats(h.to(dtype), "layer")
        assert mu.dtype == sigma.dtype == dtype
        ref = h.to(dtype).float()
        torch.testing.assert_close(sigma.float(), ref.std(), rtol=1e-2, atol=1e-3)
        torch.testing.assert_close(mu.float(), ref.mean(), rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize(
    "cfg",
    [
        dict(v_reset=None, learnable_tau=True),  # PLIF, soft reset, DynamicRect
        dict(tau=1.25, decay_input=False),  # DS-ATGO's upstream neuron: hard reset
    ],
    ids=["plif-soft", "hard"],
)
def test_half_precision_gradients_match_float32_off_rounding_close_decisions(cfg, dtype):
    """The adjoint runs in float32: only decisions within rounding of an edge may differ."""
    torch.manual_seed(2)
    x = torch.randn(4, 2, 8, 16, 16).to(dtype)
    node = AdaptiveThresholdLIF(threshold="fixed", step_mode="m", **cfg).to(dtype)
    assert_gradient_near_float32(node, x)
