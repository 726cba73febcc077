"""Every input SpikingJelly's ``LIFNode`` takes, both sj_ext neurons take.

``[N, *]`` in step mode ``'s'`` and ``[T, N, *]`` in ``'m'``, with any trailing
dims: ``[N]``, ``[N, F]``, sequences ``[N, L, D]``, maps ``[N, C, H, W]`` (of
sizes the default 2 x 2 grid does not divide too) and volumes
``[N, C, D, H, W]``. With a fixed threshold (``AdaptiveThresholdLIF(threshold='fixed')``,
``DilatedWindowLIF(projection='none')``) the spikes, membranes and gradients
are ``LIFNode``'s on the same input; the adaptive threshold is checked
against a restatement of its equations. Where a grouping needs dims the input
does not give, the error names the shape, ``dims`` and a grid that fits, and
that grid works.
"""

import ast
import re

import pytest
import torch
from spikingjelly.activation_based import neuron, surrogate

from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF

DT = torch.float64
#: per-step shapes [N, *]
SHAPES = [(6,), (4, 6), (4, 5, 3), (2, 3, 4, 4), (2, 3, 5, 5), (2, 2, 3, 4, 4)]
FIXED = {
    "adaptive-fixed": lambda **kw: AdaptiveThresholdLIF(threshold="fixed", **kw),
    "dilated-none": lambda **kw: DilatedWindowLIF(projection="none", **kw),
}


def sequence(node, x_seq):
    """``node`` over ``[T, N, *]``: one call in step mode ``'m'``, a call per step in ``'s'``."""
    if node.step_mode == "m":
        return node(x_seq)
    return torch.stack([node(x) for x in x_seq])


def shape_id(shape):
    return "x".join(map(str, shape))


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("name", list(FIXED))
def test_fixed_threshold_nodes_are_lifnode_on_every_shape(name, step_mode, shape):
    torch.manual_seed(0)
    kw = dict(
        tau=3.0,
        v_threshold=0.8,
        surrogate_function=surrogate.Sigmoid(alpha=3.0),
        step_mode=step_mode,
    )
    x = 2.0 * torch.rand(4, *shape, dtype=DT)
    results = []
    for node in (FIXED[name](**kw).to(DT), neuron.LIFNode(**kw).to(DT)):
        xi = x.clone().requires_grad_(True)
        s = sequence(node, xi)
        (grad,) = torch.autograd.grad((s * torch.linspace(-1, 1, shape[-1], dtype=DT)).sum(), xi)
        results.append((s, node.v, grad))
    (s, v, grad), (s_ref, v_ref, grad_ref) = results
    assert s.shape == x.shape and 0 < s.mean() < 1
    assert torch.equal(s, s_ref)
    torch.testing.assert_close(v, v_ref)
    torch.testing.assert_close(grad, grad_ref)


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_adaptive_threshold_on_every_shape(step_mode, shape):
    r"""``V_th(t) = mean(h_t) + std(h_t)`` over the whole step, ``h_t = u + (x_t - u) / tau``."""
    torch.manual_seed(1)
    x = 2.0 * torch.rand(4, *shape, dtype=DT)
    node = AdaptiveThresholdLIF(tau=3.0, step_mode=step_mode).to(DT)
    s = sequence(node, x)
    u, want = torch.zeros(shape, dtype=DT), []
    for x_t in x:
        h = u + (x_t - u) / 3.0
        spike = (h >= h.mean() + h.std()).to(DT)
        u = h * (1.0 - spike)
        want.append(spike)
    assert torch.equal(s, torch.stack(want))
    torch.testing.assert_close(node.v, u)


@pytest.mark.parametrize(
    "kwargs,shape",
    [
        (dict(), (2, 6, 4)),  # [N, L, D]: which dim to group?
        (dict(), (2, 3, 5, 5)),  # 5 does not divide by 2
        (dict(dims=(-2,), groups=3), (2, 8, 5)),  # L = 8 not by 3
        (dict(dims=(-2, -1)), (2, 6)),  # [N, F]: -2 is the batch dim
        (dict(dims=(3, 4)), (2, 6, 4, 4)),  # no dim 4
    ],
)
@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_grouping_errors_name_shape_dims_and_a_grid_that_works(kwargs, shape, step_mode):
    node = DilatedWindowLIF(**kwargs, step_mode=step_mode)
    x = torch.rand((3, *shape) if step_mode == "m" else shape)
    with pytest.raises(ValueError) as info:
        node(x)
    message = str(info.value)
    assert str(shape) in message and "dims=" in message
    found = re.search(r"e\.g\. dims=(\([^)]*\)), groups=(\([^)]*\))", message)
    example = dict(dims=ast.literal_eval(found[1]), groups=ast.literal_eval(found[2]))
    works = DilatedWindowLIF(**example, step_mode=step_mode)
    assert works(x).shape == x.shape
    assert works.grid_for(shape)[0]  # and it groups
