import math

import pytest
import torch
from spikingjelly.activation_based import surrogate as sj_surrogate

from sj_ext.surrogate import DynamicATan, DynamicRect, DynamicSigmoid


def grad_of(sg, x, sigma=None):
    x = x.clone().requires_grad_(True)
    y = sg(x) if sigma is None else sg(x, sigma)
    (g,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), g


@pytest.mark.parametrize("sigma", [0.0, 0.4, 1.0, 2.5])
@pytest.mark.parametrize("a0,v0", [(1.0, 1.0), (0.5, 0.2)])
def test_dynamic_rect_window_point_by_point(sigma, a0, v0):
    a = a0 * (1.0 + math.tanh(sigma - v0))
    # points well inside, well outside and on both sides of each window edge
    pts = [0.0, 0.3 * a, -0.3 * a, 0.49 * a, -0.49 * a, 0.51 * a, -0.51 * a, 2 * a, -3.0]
    x = torch.tensor(pts, dtype=torch.float64)
    y, g = grad_of(DynamicRect(a0, v0), x, torch.tensor(sigma, dtype=torch.float64))
    for xi, yi, gi in zip(pts, y.tolist(), g.tolist(), strict=True):
        assert yi == (1.0 if xi >= 0 else 0.0)
        assert gi == pytest.approx(1.0 / a if abs(xi) < a / 2 else 0.0, rel=1e-12)


def test_width_rule_both_upstream_branches_agree():
    sg = DynamicRect(a0=0.7, v0=1.3)
    sigma = torch.linspace(0, 4, 41, dtype=torch.float64)
    w = sg.width(sigma)
    torch.testing.assert_close(w, 0.7 * (1 - torch.tanh(1.3 - sigma)))
    assert sg.width(None) == 0.7


def test_heaviside_at_zero_is_one():
    for sg in (DynamicRect(), DynamicATan(), DynamicSigmoid()):
        y, _ = grad_of(sg, torch.tensor([-1e-7, 0.0, 1e-7]), torch.tensor(1.0))
        assert y.tolist() == [0.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "dyn,ref",
    [
        (DynamicATan(alpha=2.0), sj_surrogate.ATan(alpha=2.0)),
        (DynamicATan(alpha=3.0), sj_surrogate.ATan(alpha=3.0)),
        (DynamicSigmoid(alpha=4.0), sj_surrogate.Sigmoid(alpha=4.0)),
    ],
)
def test_unit_width_equals_spikingjelly(dyn, ref):
    # sigma = v0 gives width a0 = 1: the shape is SpikingJelly's own
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    y, g = grad_of(dyn, x, torch.tensor(dyn.v0, dtype=torch.float64))
    y_ref, g_ref = grad_of(ref, x)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(g, g_ref)


def test_rect_equals_spikingjelly_rect_of_inverse_width():
    x = torch.linspace(-2, 2, 401, dtype=torch.float64) + 1e-3  # avoid the window edges
    a = 0.8
    _, g = grad_of(DynamicRect(a0=a), x)  # no sigma: width a0
    _, g_ref = grad_of(sj_surrogate.Rect(alpha=1.0 / a), x)
    torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("cls", [DynamicRect, DynamicATan, DynamicSigmoid])
def test_dynamic_width_scales_sharpness(cls):
    # width a at sigma equals the unit-width shape evaluated at x / a, divided by a
    sg = cls()
    sigma = torch.tensor(2.0, dtype=torch.float64)
    a = sg.width(sigma)
    x = torch.linspace(-2, 2, 81, dtype=torch.float64) + 1e-3
    _, g = grad_of(sg, x, sigma)
    _, g_unit = grad_of(sg, x / a, torch.tensor(sg.v0, dtype=torch.float64))
    torch.testing.assert_close(g, g_unit / a)


@pytest.mark.parametrize("cls", [DynamicRect, DynamicATan, DynamicSigmoid])
def test_primitive_is_antiderivative_of_surrogate(cls):
    sg = cls()
    sigma = torch.tensor([[0.3], [1.7]], dtype=torch.float64)  # broadcasting widths
    x = torch.linspace(-1.5, 1.5, 61, dtype=torch.float64).expand(2, 61) + 1e-3
    _, g_spiking = grad_of(sg, x, sigma)
    sg.set_spiking_mode(False)
    y, g_primitive = grad_of(sg, x, sigma)
    assert ((y >= 0) & (y <= 1)).all()
    torch.testing.assert_close(g_primitive, g_spiking)


def test_bad_width():
    with pytest.raises(ValueError, match="a0"):
        DynamicRect(a0=0.0)
