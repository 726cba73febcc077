"""backend='cupy' on a GPU against backend='torch' on the same GPU (skipped without one).

Parity for each neuron and option (float32 / float64 exactly as on the CPU
harness; float16 / bfloat16: equal spikes with fixed thresholds, the
reference's op-by-op rounding being reproduced), on torch's current stream,
without copies of the input, kernels compiled once per configuration.
"""

import importlib.util

import pytest
import torch
from helpers.half_reference import assert_gradient_near_float32
from helpers.neuron_runs import NEURON_CASES, assert_same_records, train_and_eval
from spikingjelly.activation_based import functional, surrogate
from spikingjelly.activation_based.model import parametric_lif_net

from sj_ext.fused_lif.device import launcher_of, require_cuda_launcher
from sj_ext.fused_lif.source import KernelConfig
from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF, set_backend

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(
        importlib.util.find_spec("cupy") is None,
        reason='needs CuPy (pip install -e ".[cupy-cuda13]" or pip install -e ".[cupy-cuda12]")',
    ),
]

CUDA = torch.device("cuda")


def both_backends(cls, cfg, x, **run):
    results = []
    for backend in ("cupy", "torch"):
        torch.manual_seed(0)
        node = cls(**cfg, step_mode="m", backend=backend).to(device=x.device, dtype=x.dtype)
        results.append(train_and_eval(node, x, **run))
    return results


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cls,cfg", NEURON_CASES)
def test_neurons_match_torch_backend_on_gpu(cls, cfg, dtype):
    torch.manual_seed(1)
    x = torch.randn(5, 4, 8, 16, 16, dtype=dtype, device=CUDA)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    assert_same_records(both_backends(cls, cfg, x), **tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize(
    "cls,cfg",
    [
        (AdaptiveThresholdLIF, dict(threshold="fixed", surrogate_function=surrogate.ATan())),
        (AdaptiveThresholdLIF, dict(threshold="fixed", v_reset=None, learnable_tau=True)),
        (DilatedWindowLIF, dict(projection="sine")),
        (DilatedWindowLIF, dict(window="block", projection="add", decay_input=False)),
    ],
)
def test_half_precision_fixed_thresholds_give_the_same_spikes(cls, cfg, dtype):
    torch.manual_seed(2)
    x = torch.randn(4, 4, 8, 16, 16, device=CUDA).to(dtype)
    outs = []
    for backend in ("cupy", "torch"):
        node = cls(**cfg, step_mode="m", backend=backend).to(device=CUDA, dtype=dtype)
        xi = x.clone().requires_grad_(True)
        s = node(xi)
        (g,) = torch.autograd.grad((s * torch.linspace(-1, 1, s.shape[-1], device=CUDA)).sum(), xi)
        outs.append((s, node.v, g))
    (s, v, g), (s_r, v_r, g_r) = outs
    assert torch.equal(s, s_r)
    assert torch.equal(v, v_r)
    torch.testing.assert_close(g.float(), g_r.float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize(
    "cfg",
    [dict(v_reset=None, learnable_tau=True), dict(tau=1.25, decay_input=False)],
    ids=["plif-soft", "hard"],
)
def test_half_precision_gradients_match_float32_off_rounding_close_decisions(cfg, dtype):
    """Both backends against float32 (tests/helpers/half_reference.py), then each other."""
    torch.manual_seed(2)
    x = torch.randn(4, 4, 8, 16, 16, device=CUDA).to(dtype)
    grads = [
        assert_gradient_near_float32(
            AdaptiveThresholdLIF(threshold="fixed", step_mode="m", backend=backend, **cfg).to(
                device=CUDA, dtype=dtype
            ),
            x,
        ).float()
        for backend in ("cupy", "torch")
    ]
    eps = torch.finfo(dtype).eps  # one rounding of the float32 adjoints
    torch.testing.assert_close(*grads, rtol=eps, atol=eps * grads[1].abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_half_precision_adaptive_thresholds_are_close(dtype):
    """Statistics: the kernels accumulate in double (the reference sums in the storage type)."""
    torch.manual_seed(3)
    x = torch.randn(4, 2, 8, 16, 16, device=CUDA).to(dtype)  # 4096 neurons: no half overflow
    recs = []
    for backend in ("cupy", "torch"):
        node = AdaptiveThresholdLIF(step_mode="m", backend=backend).to(device=CUDA, dtype=dtype)
        recs.append((node(x), node.threshold_seq, node.sigma_seq))
    (s, th, sg), (s_r, th_r, sg_r) = recs
    torch.testing.assert_close(th.float(), th_r.float(), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(sg.float(), sg_r.float(), rtol=1e-2, atol=1e-2)
    assert (s != s_r).float().mean() < 1e-2


def test_runs_on_the_current_stream():
    torch.manual_seed(4)
    x = torch.randn(5, 8, 32, 32, device=CUDA)
    cfg = dict(learnable_tau=True)
    ref = both_backends(AdaptiveThresholdLIF, cfg, x, steps=1)[0]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        on_side = both_backends(AdaptiveThresholdLIF, cfg, x, steps=1)[0]
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    assert_same_records([on_side, ref], rtol=0, atol=0)


def test_no_copies_of_the_input():
    """A forward without grad allocates the spikes and two membranes, nothing the size of x."""
    T, neurons = 4, 1 << 20
    x = torch.randn(T, neurons, device=CUDA)
    node = AdaptiveThresholdLIF(
        step_mode="m", backend="cupy", threshold="fixed", surrogate_function=surrogate.ATan()
    ).to(CUDA)
    with torch.no_grad():
        node(x)  # compile, warm up
        functional.reset_net(node)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        s = node(x)
        torch.cuda.synchronize()
    added = torch.cuda.max_memory_allocated() - base
    spikes, membrane = s.numel() * s.element_size(), node.v.numel() * node.v.element_size()
    assert added < spikes + 2 * membrane + (1 << 20), (added, spikes, membrane)  # v_0 and v_T


def test_kernels_are_compiled_once_per_configuration():
    launcher = launcher_of(require_cuda_launcher(torch.empty(1, device=CUDA)))
    node = DilatedWindowLIF(step_mode="m", backend="cupy", groups=(2, 2)).to(CUDA)
    for _ in range(2):
        functional.reset_net(node)
        node(torch.randn(2, 2, 3, 8, 8, device=CUDA))
    keys = [key for key in launcher._modules if key[0] == KernelConfig(torch.float32, 4, "sine")]
    assert len(keys) == 1


def test_set_backend_on_a_spikingjelly_model():
    torch.manual_seed(5)

    def build():
        torch.manual_seed(6)
        net = parametric_lif_net.MNISTNet(
            channels=8, spiking_neuron=AdaptiveThresholdLIF, tau=1.25, learnable_tau=True
        )
        functional.set_step_mode(net, "m")
        return net.to(CUDA).double()

    net, ref = build(), build()
    assert set_backend(net, "cupy") == 4
    x = torch.rand(3, 2, 1, 28, 28, device=CUDA, dtype=torch.float64)
    outs = []
    for model in (net, ref):  # MNISTNet's Dropout layers: the same masks for both nets
        torch.manual_seed(7)
        outs.append(model(x))
    out, out_ref = outs
    assert torch.equal(out, out_ref)
    out.sum().backward()
    out_ref.sum().backward()
    for p, p_ref in zip(net.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-10, atol=1e-12)


def test_cpu_input_is_a_clear_error():
    node = AdaptiveThresholdLIF(step_mode="m", backend="cupy")
    with pytest.raises(RuntimeError, match="runs on CUDA tensors"):
        node(torch.randn(2, 3, 4))
