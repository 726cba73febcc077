"""The fused CPU backend (``backend='cpu'``) as a user gets it: the neurons, the built library.

tests/test_fused_lif_kernels.py checks its kernels option by option against
the torch reference; here: that its kernels are the CUDA kernels' (same
names and parameters), that the neurons with ``backend='cpu'`` equal their
torch backend and SpikingJelly's ``ParametricLIFNode``, that the gradients
are the finite differences of the forward where those exist, that results do
not depend on the thread count, and what happens without a compiler or with
an input off the CPU.
"""

import warnings

import pytest
import torch
from helpers.neuron_runs import NEURON_CASES, assert_same_records, train_and_eval
from spikingjelly.activation_based import functional, layer, neuron, surrogate

import sj_ext.fused_lif as fused
from sj_ext.functional import LIFParameters
from sj_ext.fused_lif import cpu
from sj_ext.fused_lif.host import host_compiler
from sj_ext.fused_lif.lif import lif_multi_step
from sj_ext.fused_lif.source import (
    KERNEL_DIR,
    cpu_kernel_source,
    kernel_signatures,
    kernel_source,
)
from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF

pytestmark = pytest.mark.skipif(
    host_compiler() is None, reason="the fused CPU backend needs a C++ compiler (g++)"
)

DT = torch.float64


def test_cpu_kernels_have_the_cuda_kernels_names_and_parameters():
    cuda = kernel_signatures(kernel_source())
    assert set(cuda) == {"sj_lif_loop", "sj_lif_step", "sj_lif_backward"}
    assert kernel_signatures(cpu_kernel_source()) == cuda
    assert '#include "lif_core.cuh"' in (KERNEL_DIR / "lif_cpu.cpp").read_text()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cls,cfg", NEURON_CASES)
def test_neurons_on_the_cpu_backend_match_the_torch_backend(cls, cfg, dtype):
    torch.manual_seed(2)
    x = torch.randn(5, 2, 3, 6, 4, dtype=dtype)
    results = []
    for backend in ("cpu", "torch"):
        node = cls(**cfg, step_mode="m", backend=backend).to(dtype)
        assert node.supported_backends == ("torch", "cupy", "cpu")
        results.append(train_and_eval(node, x))
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == DT else dict(rtol=1e-5, atol=1e-5)
    assert_same_records(results, **tol)


def test_the_plif_equivalent_is_spikingjellys_parametric_lif_on_the_fast_path():
    """AdaptiveThresholdLIF(threshold='fixed', learnable_tau=True) with backend='cpu' is
    ParametricLIFNode (the CPU headline's neuron): spikes, membrane, every gradient."""
    kw = dict(decay_input=True, v_reset=0.0, detach_reset=True, step_mode="m")
    ours = AdaptiveThresholdLIF(
        tau=2.0,
        threshold="fixed",
        learnable_tau=True,
        surrogate_function=surrogate.ATan(alpha=2.0),
        backend="cpu",
        **kw,
    )
    ref = neuron.ParametricLIFNode(init_tau=2.0, surrogate_function=surrogate.ATan(alpha=2.0), **kw)
    torch.manual_seed(0)
    x = 1.5 * torch.randn(4, 8, 16, 7, 7)
    weight = torch.randn(4, 8, 16, 7, 7)
    outs = []
    for node in (ours, ref):
        functional.reset_net(node)
        xi = x.clone().requires_grad_(True)
        s = node(xi)
        loss = (s * weight).sum() + (node.v**2).sum()
        outs.append((s, node.v, *torch.autograd.grad(loss, [xi, node.w])))
    (s, v, gx, gw), (s_ref, v_ref, gx_ref, gw_ref) = outs
    assert torch.equal(s, s_ref)
    assert 0.05 < s.mean() < 0.5
    torch.testing.assert_close(v, v_ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("v_reset", [None, 0.0], ids=["soft", "hard"])
def test_gradients_are_finite_differences_of_the_forward(v_reset):
    """Where the forward is differentiable -- the final membrane, the reset detached, a fixed
    threshold -- the kernels' backward is its derivative (float64 central differences),
    through a learnable tau too; spikes fire, so the reset paths run."""
    torch.manual_seed(3)
    x = (1.2 * torch.randn(6, 3, 40, dtype=DT)).requires_grad_(True)
    w = torch.tensor(0.4, dtype=DT, requires_grad=True)

    params = LIFParameters(v_reset=v_reset, detach_reset=True, surrogate_function=surrogate.ATan())

    def final_membrane(x, w):
        spikes, v_last, _, _ = lif_multi_step(x, torch.zeros_like(x[0]), w.sigmoid(), 1.0, params)
        assert 0.05 < spikes.mean() < 0.9
        return v_last

    assert torch.autograd.gradcheck(final_membrane, (x, w), eps=1e-7, atol=1e-6)


def test_results_do_not_depend_on_the_thread_count():
    torch.manual_seed(4)
    x = torch.randn(4, 8, 16, 20, 20)  # 51,200 neurons: 13 blocks
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            node = AdaptiveThresholdLIF(learnable_tau=True, step_mode="m", backend="cpu")
            xi = x.clone().requires_grad_(True)
            s = node(xi)
            grads = torch.autograd.grad((s * x).sum() + (node.v**2).sum(), [xi, node.w])
            results.append((s, node.v, node.threshold_seq, node.sigma_seq, *grads))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)


def test_without_a_compiler_the_neurons_warn_once_and_run_the_torch_backend(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    cpu._default_launcher.cache_clear()
    fused.coverage._warned.clear()
    try:
        x = torch.randn(3, 2, 4, 6, 6)
        node = DilatedWindowLIF(step_mode="m", backend="cpu")
        with pytest.warns(RuntimeWarning, match=r"backend='cpu'.*C\+\+ compiler.*torch backend"):
            s = node(x)
        assert torch.equal(s, DilatedWindowLIF(step_mode="m")(x))
        with warnings.catch_warnings():  # once per process and message
            warnings.simplefilter("error")
            functional.reset_net(node)
            node(x)
    finally:
        cpu._default_launcher.cache_clear()


def test_an_input_off_the_cpu_is_a_clear_error():
    node = AdaptiveThresholdLIF(step_mode="m", backend="cpu")
    with pytest.raises(RuntimeError, match=r"backend='cpu' runs on CPU tensors.*meta"):
        node(torch.randn(2, 3, 4, device="meta"))


def test_the_library_is_built_once_into_the_kernel_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SJ_EXT_KERNEL_CACHE", str(tmp_path / "kernels"))
    launcher = cpu.CpuLauncher()
    assert launcher.build_dir == tmp_path / "kernels"
    launcher.library(fused.KernelConfig(torch.float32))
    built = sorted(p.name for p in (tmp_path / "kernels").iterdir())
    assert len(built) == 1 and built[0].endswith(".so")
    again = cpu.CpuLauncher()
    again.library(fused.KernelConfig(torch.float32))  # found, not rebuilt
    assert sorted(p.name for p in (tmp_path / "kernels").iterdir()) == built


@pytest.mark.parametrize("cls", [AdaptiveThresholdLIF, DilatedWindowLIF])
def test_a_compiled_network_keeps_the_cpu_kernels_whole(cls):
    """torch.compile(fullgraph=True), as train.compile does, of a net of 'cpu' neurons: the
    launcher lookup is a constant to the tracer (the library is not built in the graph),
    the fused operator is one node of the one graph, and values and gradients equal eager."""
    graphs = []

    def recording(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    def net():
        torch.manual_seed(6)
        model = torch.nn.Sequential(layer.Conv2d(3, 8, 3, padding=1), cls(backend="cpu"))
        functional.set_step_mode(model, "m")
        return model

    eager = net()
    compiled = torch.compile(net(), backend=recording, fullgraph=True)
    x = torch.randn(2, 3, 3, 8, 8)
    outs = []
    for model in (eager, compiled):
        functional.reset_net(model)
        xi = x.clone().requires_grad_(True)
        y = model(xi)
        weight = torch.linspace(-1, 1, y.numel()).view_as(y)
        outs.append((y, *torch.autograd.grad((y * weight).sum(), xi)))
    assert len(graphs) == 1
    targets = [n.target for n in graphs[0].graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.sj_ext.fused_lif_forward.default) == 1
    assert torch.equal(outs[0][0], outs[1][0])
    assert 0 < outs[0][0].mean() < 1
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-6, atol=1e-6)


def test_the_headline_recipe_builds_the_plif_net():
    """recipes/clsnn_mnist_cpu.yaml names the PLIF equivalent on the CPU backend: from one
    seed its net is recipes/clsnn_mnist_cpu_plif.yaml's, with SpikingJelly's
    ParametricLIFNode (same parameters, outputs and gradients)."""
    from helpers import RECIPES

    from sj_ext.app.components import MODELS
    from sj_ext.app.engine.build import neuron_factory
    from sj_ext.app.recipe import load_recipe

    nets = []
    for name in ("clsnn_mnist_cpu_plif", "clsnn_mnist_cpu"):
        recipe = load_recipe(RECIPES / f"{name}.yaml", ["model.args.channels=16"])
        torch.manual_seed(0)
        net = MODELS.build(
            recipe["model"]["name"],
            num_classes=10,
            in_channels=1,
            spiking_neuron=neuron_factory(recipe),
            **recipe["model"]["args"],
        )
        functional.set_step_mode(net, "m")
        nets.append(net)
    plif, fused = nets
    assert {type(m).__name__ for m in fused.modules()} >= {"AdaptiveThresholdLIF"}
    assert all(m.backend == "cpu" for m in fused.modules() if hasattr(m, "threshold"))
    for (name, p), (name_f, p_f) in zip(
        plif.named_parameters(), fused.named_parameters(), strict=True
    ):
        assert name == name_f and torch.equal(p, p_f)
    x = torch.rand(4, 3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    outs = []
    for net in nets:
        functional.reset_net(net)
        spikes = []  # every spiking layer's output, in order
        hooks = [
            m.register_forward_hook(lambda m, i, o, out=spikes: out.append(o))
            for m in net.modules()
            if hasattr(m, "v_threshold")
        ]
        torch.manual_seed(2)  # the same dropout masks
        y = net(x)
        for hook in hooks:
            hook.remove()
        loss = sum((s * torch.linspace(-1, 1, s.numel()).view_as(s)).sum() for s in spikes)
        outs.append((y, *spikes, *torch.autograd.grad(loss, list(net.parameters()))))
    assert len(outs[0]) == len(outs[1])
    assert 0 < outs[0][1].mean() < 1  # the first spiking layer fires
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
