"""The fused kernels as PyTorch operators: schema, fake shapes, autograd, ``torch.compile``.

``torch.ops.sj_ext.fused_lif_forward`` / ``fused_lif_backward`` are
``torch.library.custom_op`` s with a fake implementation and, for the
forward, a registered autograd formula. Without a kernel to run, the schemas
and the fake implementation are checked against the shapes the kernels write
(under ``FakeTensorMode``). With the g++ harness (:class:`HostLauncher`, the
CUDA source on the CPU) ``torch.library.opcheck`` runs all of its checks on
both operators, and a compiled neuron with ``backend='cupy'`` keeps the fused
operator in its one graph, with eager's results.
"""

import copy
import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import sj_ext.fused_lif as fused
from sj_ext.fused_lif import ops
from sj_ext.fused_lif.host import HostLauncher, host_compiler
from sj_ext.fused_lif.lif import chain_layout
from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF

DT = torch.float64
needs_harness = pytest.mark.skipif(
    host_compiler() is None, reason="running the kernels on the CPU needs a C++ compiler (g++)"
)
FORWARD = torch.ops.sj_ext.fused_lif_forward.default
BACKWARD = torch.ops.sj_ext.fused_lif_backward.default


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    return HostLauncher(tmp_path_factory.mktemp("sj_ops"), block=32, max_blocks=3)


def forward_args(x, launcher_key, grouped=False, adaptive=True, keep_h=True, dtype=DT):
    """Arguments of ``fused_lif_forward`` for ``x`` ``[T, N, C, H, W]``: ungrouped, dynamic
    rectangle, adaptive threshold; or a 2 x 2 sine chain at fixed thresholds, arctan."""
    steps, step_shape = x.shape[0], x.shape[1:]
    acc = torch.float64 if dtype == DT else torch.float32
    layout = (
        chain_layout(tuple(step_shape), (2, 3), (2, 2), "dilated", x.device) if grouped else None
    )
    surrogate = ("atan", False, 2.0, 1.0, 0.0) if grouped else ("rect", True, 1.0, 1.0, 1.0)
    return (
        x,
        torch.zeros(step_shape, dtype=dtype, requires_grad=x.requires_grad),
        torch.full((1,), 0.5, dtype=acc, requires_grad=x.requires_grad),
        torch.zeros(steps, dtype=acc) if adaptive else torch.full((steps,), 0.6, dtype=acc),
        layout,
        4 if grouped else 1,  # chain_length
        "sine" if grouped else "none",
        True,  # decay_input
        0.0,  # v_reset
        False,  # detach_reset
        math.pi / 4,
        adaptive,
        1.0,  # f_c
        adaptive,  # take_stats: taken for the adaptive threshold and the dynamic rectangle
        keep_h,
        *surrogate,
        launcher_key,
    )


def test_schemas_take_numbers_and_tensors_and_mutate_nothing():
    """Fresh outputs (no alias, no in-place argument), options as numbers and strings."""
    assert str(FORWARD._schema) == (
        "sj_ext::fused_lif_forward(Tensor x, Tensor v_init, Tensor k, Tensor thresholds, "
        "Tensor? layout, SymInt chain_length, str projection, bool decay_input, float? v_reset, "
        "bool detach_reset, float theta, bool adaptive, float f_c, bool take_stats, bool keep_h, "
        "str surrogate, bool dynamic, float alpha, float a0, float v0, SymInt launcher) "
        "-> (Tensor, Tensor, Tensor, Tensor, Tensor)"
    )
    assert str(BACKWARD._schema) == (
        "sj_ext::fused_lif_backward(Tensor h, Tensor? x, Tensor? v_init, Tensor k, "
        "Tensor? layout, Tensor vth, Tensor? sigma, Tensor? grad_spike, Tensor? grad_v, "
        "SymInt chain_length, str projection, bool decay_input, float? v_reset, bool detach_reset, "
        "float theta, str surrogate, bool dynamic, float alpha, float a0, float v0, "
        "bool learn_k, SymInt launcher) -> (Tensor, Tensor, Tensor)"
    )
    assert not FORWARD._schema.is_mutable and not BACKWARD._schema.is_mutable
    # the autograd formula reads the forward's arguments by these names
    forward = [a.name for a in FORWARD._schema.arguments]
    backward = [a.name for a in BACKWARD._schema.arguments]
    assert list(ops.FORWARD_ARGS) == forward
    assert set(ops.SHARED_OPTIONS) == set(forward) & set(backward) - {"x", "v_init", "k", "layout"}


@pytest.mark.parametrize("dtype", [DT, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("grouped,adaptive,keep_h", [(False, True, True), (True, False, False)])
def test_fake_implementations_give_the_kernels_shapes(dtype, grouped, adaptive, keep_h):
    """No kernel runs: shapes, dtypes and devices from the fake implementations alone."""
    acc = torch.float64 if dtype == DT else torch.float32
    x = torch.empty(3, 2, 2, 4, 4, dtype=dtype)
    mode = FakeTensorMode()
    args = [
        mode.from_tensor(a) if isinstance(a, torch.Tensor) else a
        for a in forward_args(x, -1, grouped, adaptive, keep_h, dtype)  # no launcher is asked
    ]
    x = args[0]
    with mode:
        spike, v_out, h, vth, sigma = FORWARD(*args)
        grads = BACKWARD(
            h if keep_h else x, None, args[1], args[2], args[4], vth, sigma if adaptive else None,
            spike, v_out, *args[5:11], *args[15:20], True, -1,
        )  # fmt: skip
    assert spike.shape == x.shape and spike.dtype == dtype
    assert v_out.shape == x.shape[1:] and v_out.dtype == dtype
    assert h.shape == (x.shape if keep_h else (0,)) and h.dtype == dtype
    assert vth.shape == (3,) and vth.dtype == acc
    assert sigma.shape == ((3,) if adaptive else (0,)) and sigma.dtype == acc
    grad_x, grad_v, grad_k = grads
    assert grad_x.shape == x.shape and grad_v.shape == x.shape[1:] and grad_k.shape == (1,)
    assert grad_k.dtype == acc


@needs_harness
@pytest.mark.parametrize("grouped", [False, True], ids=["rect-adaptive", "sine-chain-atan"])
def test_opcheck_forward(host, grouped):
    torch.manual_seed(0)
    x = (2.0 * torch.rand(3, 2, 2, 4, 4, dtype=DT)).requires_grad_(True)
    args = forward_args(x, host.key, grouped, adaptive=not grouped)
    torch.library.opcheck(FORWARD, args)


@needs_harness
def test_opcheck_backward(host):
    torch.manual_seed(0)
    x = 2.0 * torch.rand(3, 2, 2, 4, 4, dtype=DT)
    args = forward_args(x, host.key, grouped=True, adaptive=False)
    spike, v_out, h, vth, _ = FORWARD(*args)
    grad_spike, grad_v = torch.rand_like(spike), torch.rand_like(v_out)
    backward_args = (h, x, args[1], args[2], args[4], vth, None, grad_spike, grad_v)
    torch.library.opcheck(BACKWARD, (*backward_args, *args[5:11], *args[15:20], True, host.key))


@needs_harness
@pytest.mark.parametrize(
    "node",
    [
        AdaptiveThresholdLIF(learnable_tau=True),
        DilatedWindowLIF(groups=(2, 2), threshold="adaptive", learnable_tau=True),
    ],
    ids=["adaptive", "dilated"],
)
def test_compiled_cupy_backend_keeps_the_fused_operator(host, monkeypatch, node):
    """One graph holding ``sj_ext.fused_lif_forward``; the eager spikes, membrane, gradients."""
    monkeypatch.setattr(fused, "require_launcher", lambda x, backend: host.key)
    node = copy.deepcopy(node).to(DT)
    node.step_mode, node.backend = "m", "cupy"
    x = 2.0 * torch.rand(3, 2, 2, 4, 4, dtype=DT)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(node)(x.clone().requires_grad_(True))
    node.reset()
    assert explanation.graph_break_count == 0
    targets = [n.target for g in explanation.graphs for n in g.graph.nodes]
    assert FORWARD in targets or FORWARD.overloadpacket in targets
    twin = copy.deepcopy(node)
    compiled = torch.compile(twin, backend="aot_eager", fullgraph=True)
    records = []
    for run, module in ((node, node), (compiled, twin)):
        xi = x.clone().requires_grad_(True)
        out = run(xi)
        grads = torch.autograd.grad(
            (out * torch.linspace(-1, 1, 4, dtype=DT)).sum(), [xi, module.w]
        )
        records.append((out, module.v, *grads))
    (out, *rest), (out_c, *rest_c) = records
    assert 0 < out.mean() < 1 and torch.equal(out_c, out)
    for got, want in zip(rest_c, rest, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
