"""The fused kernels against the torch backend, on the CPU: the check harness and the CPU backend.

Every test runs twice, once per launcher of :mod:`sj_ext.fused_lif.host`:

* ``harness``: the CUDA source under :class:`~sj_ext.fused_lif.host.HostLauncher`
  (blocks of 32 threads, at most 3 blocks: grid-stride loops and multi-block
  reductions run);
* ``cpu``: the fused CPU backend's kernels (:class:`~sj_ext.fused_lif.cpu.CpuLauncher`,
  blocks of 16 chains: many blocks, partial tiles);

under the same operators and autograd formula as on a GPU, and every result is
compared with the torch reference: spikes equal, membranes / thresholds /
sigma / gradients to float64 round-off (float32: gradients to 1e-5 relative).
"""

import warnings

import pytest
import torch
from helpers.half_reference import assert_gradient_near_float32
from helpers.neuron_runs import NEURON_CASES, assert_same_records, train_and_eval
from spikingjelly.activation_based import functional, surrogate

import sj_ext.fused_lif as fused
from sj_ext.functional import LIFParameters
from sj_ext.functional import lif_multi_step as torch_lif_multi_step
from sj_ext.fused_lif.cpu import CpuLauncher
from sj_ext.fused_lif.host import HostLauncher, host_compiler
from sj_ext.fused_lif.lif import lif_multi_step
from sj_ext.models.layout import to_channels_last
from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF, set_backend
from sj_ext.surrogate import DynamicATan, DynamicRect, DynamicSigmoid

pytestmark = pytest.mark.skipif(
    host_compiler() is None, reason="the CPU kernel harness needs a C++ compiler (g++)"
)

DT = torch.float64


@pytest.fixture(scope="module", params=["harness", "cpu"])
def host(request, tmp_path_factory):
    """The key of a launcher on the CPU (what the fused operators take)."""
    build = tmp_path_factory.mktemp("sj_kernels")
    if request.param == "cpu":
        return CpuLauncher(build, chains_per_block=16).key
    return HostLauncher(build, block=32, max_blocks=3).key


@pytest.fixture
def on_host(host, monkeypatch):
    """Neurons with backend='cupy' run the kernels on the CPU (harness or CPU backend)."""
    monkeypatch.setattr(fused, "require_launcher", lambda x, backend: host)
    return host


def tolerances(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)


def compare(run, dtype, learn_k, shape=(5, 2, 4, 6, 6)):
    """``run(x, v, k, impl)`` for the kernels and the reference: same results and gradients."""
    torch.manual_seed(0)
    x = 1.5 * torch.randn(*shape, dtype=dtype)
    v = 0.3 * torch.randn(*shape[1:], dtype=dtype)
    w = torch.tensor(0.3, dtype=dtype)
    results = []
    for impl in ("kernel", "torch"):
        xi, vi, wi = (t.clone().requires_grad_(True) for t in (x, v, w))
        s, v_t, v_th, sigma = run(xi, vi, wi.sigmoid() if learn_k else 0.4, impl)
        weight = torch.linspace(-1, 1, s.numel(), dtype=dtype).view_as(s)
        loss = (s * weight).sum() + (v_t**2).sum()
        grads = torch.autograd.grad(loss, [xi, vi] + ([wi] if learn_k else []))
        results.append((s, v_t, v_th, sigma, grads))
    (s, v_t, v_th, sigma, grads), (s_r, v_r, v_th_r, sigma_r, grads_r) = results
    assert torch.equal(s, s_r)
    assert 0 < s.mean() < 1
    tol = tolerances(dtype)
    torch.testing.assert_close(v_t, v_r, **tol)
    torch.testing.assert_close(v_th, v_th_r, **tol)
    assert (sigma is None) == (sigma_r is None)
    if sigma is not None:
        torch.testing.assert_close(sigma, sigma_r, **tol)
    for g, g_r in zip(grads[:2], grads_r[:2], strict=True):
        assert g.abs().sum() > 0
        torch.testing.assert_close(g, g_r, **tol)
    if learn_k:  # a sum over every element and step: float32 round-off of the reference's order
        torch.testing.assert_close(
            grads[2], grads_r[2], **(tol if dtype == DT else dict(rtol=1e-4, atol=1e-6))
        )


SURROGATES = {
    "dyn-rect": DynamicRect,
    "dyn-atan": lambda: DynamicATan(alpha=3.0, a0=0.8, v0=0.5),
    "dyn-sigmoid": DynamicSigmoid,
    "sj-atan": surrogate.ATan,
    "sj-sigmoid": lambda: surrogate.Sigmoid(alpha=3.0),
    "sj-rect": lambda: surrogate.Rect(alpha=0.7),
}
NEURONS = {  # (decay_input, v_reset, detach_reset, learnable tau)
    "hard-plif": (True, 0.0, False, True),
    "soft-detach-plif-nodecay": (False, None, True, True),
    "hard-rest-nodecay": (False, -0.2, False, False),
    "soft": (True, None, False, False),
}
THRESHOLDS = {
    "adaptive": lambda dt: None,
    "fixed": lambda dt: 0.8,
    "running": lambda dt: torch.tensor([0.5, 0.7, 0.9, 1.0, 1.1], dtype=dt),
}


CASES = [  # float64: every combination; float32: a subset
    (dtype, neuron, sg, thresholds)
    for dtype in ("f64", "f32")
    for neuron in NEURONS
    for sg in SURROGATES
    for thresholds in THRESHOLDS
    if dtype == "f64" or (neuron == "hard-plif" and sg in ("dyn-rect", "sj-sigmoid"))
]


@pytest.mark.parametrize("dtype,neuron,sg,thresholds", CASES, ids=["-".join(c) for c in CASES])
def test_adaptive_lif_kernels_match_torch(host, dtype, neuron, sg, thresholds):
    dtype = {"f64": torch.float64, "f32": torch.float32}[dtype]
    decay_input, v_reset, detach_reset, learn_k = NEURONS[neuron]
    kw = dict(
        decay_input=decay_input,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=SURROGATES[sg](),
        f_c=0.9,
    )
    thr = THRESHOLDS[thresholds](dtype)

    def run(x, v, k, impl):
        if impl == "kernel":
            return lif_multi_step(x, v, k, thr, LIFParameters(**kw), launcher=host)
        return torch_lif_multi_step(x, v, k, thr, LIFParameters(stats="layer", **kw))

    compare(run, dtype, learn_k)


GROUPINGS = {  # per-step shape, dims, grid
    "map-2x3": ((2, 4, 6, 6), (2, 3), (2, 3)),
    "map-3x1": ((2, 4, 6, 6), (2, 3), (3, 1)),
    "seq-4": ((3, 8, 5), (1,), (4,)),
    "three-dims": ((2, 4, 6, 4), (1, 2, 3), (2, 3, 2)),
}


@pytest.mark.parametrize("grouping", GROUPINGS)
@pytest.mark.parametrize("window", ["block", "dilated"])
@pytest.mark.parametrize("projection", ["sine", "add", "none"])
@pytest.mark.parametrize(
    "neuron,thresholds,sg",
    [("hard-plif", "fixed", "sj-sigmoid"), ("soft-detach-plif-nodecay", "adaptive", "dyn-rect")],
)
def test_grouped_kernels_match_torch(host, grouping, window, projection, neuron, thresholds, sg):
    shape, dims, grid = GROUPINGS[grouping]
    decay_input, v_reset, detach_reset, learn_k = NEURONS[neuron]
    kw = dict(
        dims=dims,
        groups=grid,
        window=window,
        projection=projection,
        theta=0.6,
        decay_input=decay_input,
        v_reset=v_reset,
        detach_reset=detach_reset,
        surrogate_function=SURROGATES[sg](),
    )
    thr = THRESHOLDS[thresholds](DT)

    def run(x, v, k, impl):
        if impl == "kernel":
            return lif_multi_step(x, v, k, thr, LIFParameters(**kw), launcher=host)
        return torch_lif_multi_step(x, v, k, thr, LIFParameters(stats="layer", **kw))

    compare(run, DT, learn_k, shape=(5, *shape))


def test_grouped_float32_matches_torch(host):
    kw = dict(
        dims=(2, 3),
        groups=(2, 2),
        window="dilated",
        projection="sine",
        decay_input=True,
        v_reset=0.0,
        detach_reset=False,
        surrogate_function=DynamicRect(),
    )

    def run(x, v, k, impl):
        if impl == "kernel":
            return lif_multi_step(x, v, k, None, LIFParameters(**kw), launcher=host)
        return torch_lif_multi_step(x, v, k, None, LIFParameters(stats="layer", **kw))

    compare(run, torch.float32, learn_k=True)


def test_forward_without_grad_keeps_one_step(host):
    """No backward to come: sj_lif_step keeps one step of h; results equal the training ones."""
    torch.manual_seed(1)
    x, v = torch.randn(4, 3, 50, dtype=DT), torch.zeros(3, 50, dtype=DT)
    p = LIFParameters(
        decay_input=True, v_reset=0.0, detach_reset=False, surrogate_function=DynamicRect()
    )
    with torch.no_grad():
        lean = lif_multi_step(x, v, 0.5, None, p, launcher=host)
    full = lif_multi_step(x.requires_grad_(True), v, 0.5, None, p, launcher=host)
    for a, b in zip(lean, full, strict=True):
        assert torch.equal(a, b)


def test_options_the_kernels_do_not_cover_are_value_errors(host):
    x, v = torch.randn(2, 3, 4), torch.zeros(3, 4)
    kw = dict(decay_input=True, v_reset=0.0, detach_reset=False)

    def params(**options):
        return LIFParameters(**kw, **options)

    with pytest.raises(ValueError, match="PiecewiseQuadratic"):
        lif_multi_step(
            x, v, 0.5, None, params(surrogate_function=surrogate.PiecewiseQuadratic()), host
        )
    with pytest.raises(ValueError, match="spiking=True"):
        lif_multi_step(x, v, 0.5, None, params(surrogate_function=DynamicRect(spiking=False)), host)
    with pytest.raises(ValueError, match="callable projection"):
        lif_multi_step(
            x[:, :, None],
            v[:, None],
            0.5,
            None,
            params(
                surrogate_function=DynamicRect(),
                dims=(2,),
                groups=(2,),
                projection=lambda r, o: r,
            ),
            host,
        )
    with pytest.raises(ValueError, match="at least 2"):
        lif_multi_step(
            x[:, :1, :1], v[:1, :1], 0.5, None, params(surrogate_function=DynamicRect()), host
        )


# ----------------------------------------------------------------------------------------------
# The neurons with backend='cupy' (on the harness) against backend='torch'.
@pytest.mark.parametrize("cls,cfg", NEURON_CASES)
def test_neurons_on_kernels_match_torch_backend(on_host, cls, cfg):
    torch.manual_seed(2)
    x = torch.randn(5, 2, 3, 6, 4, dtype=DT)
    results = []
    for backend in ("cupy", "torch"):
        node = cls(**cfg, step_mode="m", backend=backend).to(DT)
        results.append(train_and_eval(node, x))
    assert_same_records(results, rtol=1e-12, atol=1e-12)


def test_set_backend_switches_a_whole_network(on_host):
    torch.manual_seed(3)
    layers = lambda: torch.nn.Sequential(  # noqa: E731
        torch.nn.Linear(6, 16),
        AdaptiveThresholdLIF(step_mode="m", learnable_tau=True),
        torch.nn.Linear(16, 8),
        DilatedWindowLIF(step_mode="m", dims=(1,), groups=(4,), projection="sine"),
    )
    net = layers().to(DT)
    ref = layers().to(DT)
    ref.load_state_dict(net.state_dict())
    assert set_backend(net, "cupy") == 2
    assert [m.backend for m in net if hasattr(m, "backend")] == ["cupy", "cupy"]
    x = torch.randn(4, 3, 6, dtype=DT)
    outs = [model(x) for model in (net, ref)]
    assert torch.equal(*outs)
    outs[0].sum().backward()
    outs[1].sum().backward()
    for p, p_ref in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="backend"):
        set_backend(net, "triton")


def test_uncovered_options_fall_back_to_torch_with_one_warning(on_host):
    torch.manual_seed(4)
    x = torch.randn(3, 2, 4, 5, 5, dtype=DT)
    node = AdaptiveThresholdLIF(stats="channel", step_mode="m", backend="cupy").to(DT)
    ref = AdaptiveThresholdLIF(stats="channel", step_mode="m").to(DT)
    fused.coverage._warned.clear()
    with pytest.warns(RuntimeWarning, match=r"stats='channel'.*torch backend"):
        s = node(x)
    assert torch.equal(s, ref(x))
    torch.testing.assert_close(node.running_threshold, ref.running_threshold)
    with warnings.catch_warnings():  # once per process and message
        warnings.simplefilter("error")
        functional.reset_net(node)
        node(x)
    callable_node = DilatedWindowLIF(projection=lambda r, o: r + o, step_mode="m", backend="cupy")
    with pytest.warns(RuntimeWarning, match="callable projection"):
        callable_node(torch.randn(3, 2, 4, 4, 4))
    reason = fused.unsupported_reason(
        x,
        None,
        LIFParameters(stats="layer", stats_group=object(), surrogate_function=DynamicRect()),
    )
    assert "stats_group" in reason
    fixed = fused.unsupported_reason(
        x,
        1.0,
        LIFParameters(stats="channel", stats_group=object(), surrogate_function=surrogate.ATan()),
    )
    assert fixed is None  # no statistics taken: the kernels run


def test_single_step_mode_uses_the_torch_functions(on_host):
    """backend='cupy' in step mode 's' runs the torch step (the kernels are multi-step)."""
    torch.manual_seed(5)
    x = torch.randn(3, 2, 7, dtype=DT)
    nodes = [AdaptiveThresholdLIF(backend=b).to(DT) for b in ("cupy", "torch")]
    outs = [torch.stack([node(xt) for xt in x]) for node in nodes]
    assert torch.equal(*outs)


def test_building_on_cpu_and_the_errors_of_a_cupy_forward():
    """Building needs nothing; a forward on a CPU tensor (or without CuPy) is a clear error."""
    node = AdaptiveThresholdLIF(step_mode="m", backend="cupy")
    assert node.backend == "cupy"
    expected = r"backend='cupy' (needs CuPy: pip install cupy-cuda13x|runs on CUDA tensors)"
    with pytest.raises(RuntimeError, match=expected):
        node(torch.randn(2, 3, 4))


def test_bfloat16_kernels_match_torch_and_float32(on_host):
    """PLIF, soft reset, DynamicRect: both adjoints in float32 from the same forward."""
    torch.manual_seed(2)
    x = torch.randn(4, 2, 8, 16, 16).to(torch.bfloat16)
    grads = []
    for backend in ("cupy", "torch"):
        node = AdaptiveThresholdLIF(
            threshold="fixed", v_reset=None, learnable_tau=True, step_mode="m", backend=backend
        ).to(torch.bfloat16)
        grads.append(assert_gradient_near_float32(node, x))
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)


@pytest.mark.parametrize(
    "cls,cfg",
    [
        (AdaptiveThresholdLIF, dict(learnable_tau=True)),
        (DilatedWindowLIF, dict(projection="none", threshold="adaptive")),
        (DilatedWindowLIF, dict(threshold="adaptive")),  # a layout table: contiguous copy
    ],
    ids=["adaptive", "independent-groups", "sine-groups"],
)
def test_channels_last_input_keeps_its_layout_and_results(on_host, cls, cfg):
    """Elementwise kernels run in the input's memory order: no copy, spikes in that order."""
    torch.manual_seed(4)
    x = torch.randn(3, 2, 4, 6, 6, dtype=DT)
    x_cl = to_channels_last(x)
    results = []
    for xi in (x, x_cl):
        node = cls(**cfg, step_mode="m", backend="cupy").to(DT)
        xi = xi.clone().requires_grad_(True)
        s = node(xi)
        weight = torch.linspace(-1, 1, s.numel(), dtype=DT).view_as(s)
        loss = (s * weight).sum() + (node.v**2).sum()
        (g,) = torch.autograd.grad(loss, xi)
        results.append((s, node.v, g, node.threshold_seq))
    (s, v, g, th), (s_cl, v_cl, g_cl, th_cl) = results
    assert torch.equal(s_cl, s)
    assert 0 < s.mean() < 1
    for got, want in ((v_cl, v), (g_cl, g), (th_cl, th)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    if cfg.get("projection", "sine") == "none" or cls is AdaptiveThresholdLIF:
        assert s_cl.stride() == g_cl.stride() == x_cl.stride()
    else:
        assert s_cl.is_contiguous()
