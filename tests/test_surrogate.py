import math

import pytest
import torch
from spikingjelly.activation_based import surrogate as sj_surrogate

from sj_ext.surrogate import (
    DERIVATIVES,
    DynamicATan,
    DynamicRect,
    DynamicSigmoid,
    NoClosedFormError,
    has_closed_form,
    register_derivative,
    spike_derivative,
)


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


# ------------------------------------------------------------------------------ closed forms
#: every SpikingJelly surrogate with a closed form, at parameters other than the defaults
CLOSED_FORM_CASES = [
    sj_surrogate.Sigmoid(alpha=3.0),
    sj_surrogate.ATan(alpha=3.0),
    sj_surrogate.Rect(alpha=0.8),
    sj_surrogate.PiecewiseQuadratic(alpha=1.5),
    sj_surrogate.PiecewiseExp(alpha=2.0),
    sj_surrogate.SoftSign(alpha=3.0),
    sj_surrogate.SuperSpike(alpha=2.0),
    sj_surrogate.NonzeroSignLogAbs(alpha=2.0),
    sj_surrogate.Erf(alpha=1.5),
    sj_surrogate.PiecewiseLeakyReLU(w=0.7, c=0.05),
    sj_surrogate.SquarewaveFourierSeries(n=4, T_period=6.0),
    sj_surrogate.S2NN(alpha=3.0, beta=0.5),
    sj_surrogate.QPseudoSpike(alpha=3.0),
    sj_surrogate.LeakyKReLU(leak=0.1, k=0.8),
    sj_surrogate.FakeNumericalGradient(alpha=0.5),
    sj_surrogate.LogTailedReLU(alpha=0.1),
    sj_surrogate.DeterministicPass(),
]
#: SpikingJelly's surrogates whose spikes are not the Heaviside step: no closed form
NOT_HEAVISIDE = {sj_surrogate.PoissonPass, sj_surrogate.MultiLevelSpikeCount}


def test_every_registered_closed_form_has_a_case():
    assert {type(sg) for sg in CLOSED_FORM_CASES} == set(DERIVATIVES)


@pytest.mark.parametrize("sg", CLOSED_FORM_CASES, ids=lambda sg: type(sg).__name__)
def test_closed_form_equals_the_surrogates_own_backward(sg):
    # a grid off every kink and window edge, and 0 itself
    x = torch.linspace(-3, 3, 600, dtype=torch.float64) + 1e-3
    x = torch.cat([x, x.new_zeros(1)])
    _, g_autograd = grad_of(sg, x)
    g = spike_derivative(sg, x)
    assert g.shape == x.shape and g.dtype == torch.float64
    assert g_autograd.abs().sum() > 0
    torch.testing.assert_close(g, g_autograd, rtol=1e-6, atol=1e-6)


def test_every_spikingjelly_heaviside_surrogate_has_a_closed_form():
    """A surrogate added upstream is noticed here: registered, or shown not to be a Heaviside."""
    x = torch.tensor([0.0, 0.25, 1.0])  # probabilities, for PoissonPass; Heaviside: all ones
    for cls in vars(sj_surrogate).values():
        if not (isinstance(cls, type) and issubclass(cls, sj_surrogate.SurrogateFunctionBase)):
            continue
        if cls is sj_surrogate.SurrogateFunctionBase or cls in DERIVATIVES:
            continue
        assert cls in NOT_HEAVISIDE, f"{cls.__name__} has no closed-form derivative in sj_ext"
        sg = cls(1) if cls is sj_surrogate.MultiLevelSpikeCount else cls()
        torch.manual_seed(0)
        assert not torch.equal(sg(x), sj_surrogate.heaviside(x))


def test_dynamic_surrogates_have_closed_forms_at_every_width():
    sigma = torch.tensor([[0.3], [1.7]], dtype=torch.float64)
    x = torch.linspace(-1.5, 1.5, 61, dtype=torch.float64).expand(2, 61) + 1e-3
    for sg in (DynamicRect(), DynamicATan(alpha=3.0), DynamicSigmoid(alpha=5.0)):
        assert has_closed_form(sg)
        _, g_autograd = grad_of(sg, x, sigma)
        torch.testing.assert_close(spike_derivative(sg, x, sigma), g_autograd)


def test_no_closed_form_names_the_surrogate_and_registering_one_adds_it(monkeypatch):
    class SharperATan(sj_surrogate.ATan):  # a subclass may change the maths: not inherited
        pass

    sg = SharperATan(alpha=2.0)
    assert not has_closed_form(sg)
    with pytest.raises(NoClosedFormError, match="SharperATan.*register_derivative"):
        spike_derivative(sg, torch.zeros(3))
    monkeypatch.setitem(DERIVATIVES, SharperATan, None)  # removed again after the test
    register_derivative(SharperATan)(lambda x, alpha: alpha * torch.ones_like(x))
    assert has_closed_form(sg)
    assert spike_derivative(sg, torch.zeros(3)).tolist() == [2.0] * 3
