"""ConfidenceAwareLoss (SuperLoss form of CL-SNN), TETLoss and their functional core.

References are independent of the implementation: scipy's Lambert W, a brute-force
minimisation of the SuperLoss objective, per-sample losses written from log_softmax, and
SpikingJelly's TET cross-entropy.
"""

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from scipy.special import lambertw
from spikingjelly.activation_based.functional import temporal_efficient_training_cross_entropy

from sj_ext.app.components import LOSSES
from sj_ext.functional.curriculum import superloss, superloss_sigma
from sj_ext.functional.tet import tet_loss
from sj_ext.loss import ConfidenceAwareLoss, TETLoss, TimeMeanCrossEntropy

T, N, C = 4, 6, 5


def sigma_ref(loss, tau, lam):
    """sigma* from scipy's Lambert W (sigma* = e at the clamp, W(-1/e) = -1, where scipy
    returns NaN for -1/e rounded)."""
    beta = (np.asarray(loss, dtype=np.float64) - np.asarray(tau, dtype=np.float64)) / lam
    clamped = beta <= -2 / math.e
    w = lambertw(0.5 * np.where(clamped, 0.0, beta)).real
    return np.where(clamped, math.e, np.exp(-w))


def ce_ref(x_seq, y):
    return -F.log_softmax(x_seq.mean(0), -1)[torch.arange(len(y)), y]


def smoothed_ce_ref(x_seq, y, eps):
    logp = F.log_softmax(x_seq.mean(0), -1)
    return -(1 - eps) * logp[torch.arange(len(y)), y] - eps * logp.mean(-1)


def mse_rate_ref(x_seq, y):
    one_hot = torch.zeros(x_seq.shape[1:], dtype=x_seq.dtype)
    one_hot[torch.arange(len(y)), y] = 1.0
    return ((x_seq.mean(0) - one_hot) ** 2).mean(-1)


def tet_ref(x_seq, y, lam, phi):
    logp = F.log_softmax(x_seq, -1)  # [T, N, C]
    ce = -logp[:, torch.arange(len(y)), y].mean(0)
    return (1 - lam) * ce + lam * ((x_seq - phi) ** 2).mean(dim=(0, 2))


BASES = {
    "ce": ce_ref,
    "label_smoothing_ce": lambda x, y: smoothed_ce_ref(x, y, 0.1),
    "mse_rate": mse_rate_ref,
    "tet": lambda x, y: tet_ref(x, y, 1e-3, 1.0),
}


def batch(seed=0, dtype=torch.float64, spikes=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, N, C, generator=g, dtype=dtype) * 2
    if spikes:
        x = (x > 0.5).to(dtype)
    y = torch.randint(0, C, (N,), generator=g)
    return x, y


# --- functional core -----------------------------------------------------------------


def brute_force_sigma(loss, tau, lam):
    """argmin over sigma of (loss - tau) sigma + lam log(sigma)^2, searched in s = log sigma.

    For beta >= -2/e the minimiser lies in s <= 1 (sigma <= e)."""
    res = minimize_scalar(
        lambda s: (loss - tau) * math.exp(s) + lam * s * s,
        bounds=(-60.0, 1.0),
        method="bounded",
        options={"xatol": 1e-12},
    )
    return math.exp(res.x), res.fun


@pytest.mark.parametrize("lam", [0.25, 1.0, 4.0])
@pytest.mark.parametrize("tau", [0.5, math.log(10)])
def test_sigma_minimises_the_superloss_objective(tau, lam):
    losses = np.array([0.0, 0.01, 0.3, 1.0, 2.3, 5.0, 20.0, 60.0])
    losses = losses[(losses - tau) / lam >= -2 / math.e + 0.05]  # a minimiser exists
    sigma = superloss_sigma(torch.tensor(losses), tau, lam).numpy()
    value = superloss(torch.tensor(losses), tau, lam)[0].numpy()
    for i, loss in enumerate(losses):
        s_bf, f_bf = brute_force_sigma(loss, tau, lam)
        assert sigma[i] == pytest.approx(s_bf, rel=1e-6)
        assert value[i] == pytest.approx(f_bf, rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_sigma_is_clamped_at_e_for_very_easy_samples(dtype):
    tau, lam = 2.0, 0.5
    # At beta = -2/e itself sigma* is sqrt-sensitive to rounding: stay 1e-3 below it.
    loss = torch.tensor([tau - 2 * lam / math.e - 1e-3, tau - 3 * lam, -50.0], dtype=dtype)
    sigma = superloss_sigma(loss, tau, lam)
    assert torch.allclose(sigma, torch.full_like(sigma, math.e), rtol=1e-6, atol=0)
    value, _ = superloss(loss, tau, lam)  # sigma = e, log sigma = 1
    assert torch.allclose(value, (loss - tau) * math.e + lam, rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_sigma_keeps_low_precision_dtypes(dtype):
    loss = torch.linspace(0.0, 6.0, 50).to(dtype)
    sigma = superloss_sigma(loss, 2.0, 1.0)
    assert sigma.dtype == dtype
    ref = sigma_ref(loss.double().numpy(), 2.0, 1.0)
    np.testing.assert_allclose(sigma.double().numpy(), ref, rtol=torch.finfo(dtype).eps)


def test_superloss_sigma_is_detached_even_for_a_trainable_tau():
    loss = torch.rand(5, dtype=torch.float64, requires_grad=True)
    tau = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    assert not superloss_sigma(loss, tau, 1.0).requires_grad
    (g,) = torch.autograd.grad(superloss(loss, tau, 1.0)[0].sum(), loss)
    assert torch.allclose(g, torch.tensor(sigma_ref(loss.detach().numpy(), 0.5, 1.0)))


def test_tet_loss_matches_formula():
    x, y = batch(1)
    np.testing.assert_allclose(tet_loss(x, y, 0.3, 0.5).numpy(), tet_ref(x, y, 0.3, 0.5).numpy())


# --- ConfidenceAwareLoss ---------------------------------------------------------------


@pytest.mark.parametrize(
    "base, tau",
    [
        (base, tau)
        for base in BASES
        for tau in ["fixed", "batch", "ema", 1.5]
        if (base, tau) != ("mse_rate", "fixed")  # rejected, see test_errors_in_constructor
    ],
)
def test_value_and_gradient(base, tau):
    x, y = batch(2, spikes=base == "mse_rate")
    x.requires_grad_(True)
    lam = 0.5
    crit = ConfidenceAwareLoss(base=base, tau=tau, lam=lam, reduction="sum")
    out = crit(x, y)

    loss_ref = BASES[base](x, y)
    l_np = loss_ref.detach().numpy()
    tau_ref = {"fixed": math.log(C), "batch": l_np.mean(), "ema": l_np.mean()}.get(tau, tau)
    np.testing.assert_allclose(crit.last_loss.numpy(), l_np, rtol=1e-12)
    assert crit.last_tau.item() == pytest.approx(tau_ref, rel=1e-6)  # ema buffer is float32
    tau_used = crit.last_tau.item()
    sig = sigma_ref(l_np, tau_used, lam)
    np.testing.assert_allclose(crit.last_sigma.numpy(), sig, rtol=1e-10)
    expected = ((l_np - tau_used) * sig + lam * np.log(sig) ** 2).sum()
    assert out.item() == pytest.approx(expected, rel=1e-10)

    # d out / dx = sum_i sigma_i* d l_i / dx: no gradient through sigma* or tau.
    (g,) = torch.autograd.grad(out, x)
    (g_ref,) = torch.autograd.grad((torch.tensor(sig) * loss_ref).sum(), x)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)


def test_easy_samples_weigh_more_than_one_and_hard_ones_less():
    logits = torch.zeros(3, C, dtype=torch.float64)
    logits[0, 1] = 8.0  # confidently right
    logits[1, 2] = 8.0  # confidently wrong
    y = torch.tensor([1, 1, 4])  # sample 2 is a uniform guess: loss = log C = tau
    crit = ConfidenceAwareLoss(tau="fixed")
    crit(logits, y)
    sigma = crit.last_sigma
    assert 1 < sigma[0] <= math.e and sigma[1] < 1
    assert sigma[2].item() == pytest.approx(1.0, abs=1e-12)


def test_reductions():
    x, y = batch(3)
    per_sample = ConfidenceAwareLoss(tau="batch", reduction="none")(x, y)
    assert per_sample.shape == (N,)
    l_ref = ce_ref(x, y).numpy()
    tau = l_ref.mean()
    sig = sigma_ref(l_ref, tau, 1.0)
    np.testing.assert_allclose(per_sample.numpy(), (l_ref - tau) * sig + np.log(sig) ** 2)
    mean = ConfidenceAwareLoss(tau="batch")(x, y)
    total = ConfidenceAwareLoss(tau="batch", reduction="sum")(x, y)
    assert mean.item() == pytest.approx(per_sample.mean().item(), rel=1e-12)
    assert total.item() == pytest.approx(per_sample.sum().item(), rel=1e-12)


def test_ema_threshold_updates_in_training_only():
    crit = ConfidenceAwareLoss(tau="ema", momentum=0.1)
    means = []
    for seed in range(3):
        x, y = batch(seed)
        crit(x, y)
        means.append(ce_ref(x, y).mean().item())
    expected = means[0]
    for m in means[1:]:
        expected = 0.9 * expected + 0.1 * m
    assert crit.tau_ema.item() == pytest.approx(expected, rel=1e-6)
    assert crit.last_tau.item() == pytest.approx(expected, rel=1e-6)

    crit.eval()
    crit(*batch(7))
    assert crit.tau_ema.item() == pytest.approx(expected, rel=1e-6)
    assert crit.last_tau.item() == pytest.approx(expected, rel=1e-6)

    fresh = ConfidenceAwareLoss(tau="ema").eval()  # uninitialised: the batch mean, no update
    x, y = batch(8)
    fresh(x, y)
    assert fresh.last_tau.item() == pytest.approx(ce_ref(x, y).mean().item(), rel=1e-12)
    assert not fresh.tau_ema_initialised


def roundtrip(module):
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf)


def test_ema_state_dict_roundtrip():
    trained = ConfidenceAwareLoss(tau="ema")
    for seed in range(2):
        trained(*batch(seed))
    state = roundtrip(trained)
    assert set(state) == {"tau_ema", "tau_ema_initialised"}

    restored = ConfidenceAwareLoss(tau="ema")
    restored.load_state_dict(state)
    x, y = batch(5)
    assert torch.equal(restored(x, y), trained(x, y))
    assert restored.tau_ema.item() == trained.tau_ema.item()

    # An EMA that has not seen a batch saves and loads too, and restarts from a batch mean.
    restored.load_state_dict(roundtrip(ConfidenceAwareLoss(tau="ema")))
    restored(x, y)
    assert restored.last_tau.item() == pytest.approx(ce_ref(x, y).mean().item(), rel=1e-6)
    assert ConfidenceAwareLoss(tau="batch").state_dict() == {}


def test_input_layouts_agree():
    x, y = batch(4)
    ref = ConfidenceAwareLoss(reduction="none")(x, y)
    n_first = ConfidenceAwareLoss(reduction="none", time_dim=1)(x.transpose(0, 1), y)
    torch.testing.assert_close(n_first, ref)
    single = ConfidenceAwareLoss(reduction="none")(x[0], y)
    torch.testing.assert_close(single, ConfidenceAwareLoss(reduction="none")(x[:1], y))


def test_callable_base_gets_the_input_as_given():
    x, y = batch(6)
    seen = []

    def base(input, target):
        seen.append(tuple(input.shape))
        return tet_ref(input.transpose(0, 1), target, 0.2, 0.5)

    crit = ConfidenceAwareLoss(base=base, tau="batch", time_dim=1)
    crit(x.transpose(0, 1), y)
    assert seen == [(N, T, C)]
    via_module = ConfidenceAwareLoss(
        base=TETLoss(lam=0.2, phi=0.5, reduction="none", time_dim=1), tau="batch", time_dim=1
    )
    via_module(x.transpose(0, 1), y)
    torch.testing.assert_close(via_module.last_loss, crit.last_loss)
    torch.testing.assert_close(via_module.last_sigma, crit.last_sigma)


def test_label_smoothing_argument():
    x, y = batch(9)
    crit = ConfidenceAwareLoss(base="label_smoothing_ce", label_smoothing=0.3)
    crit(x, y)
    torch.testing.assert_close(crit.last_loss, smoothed_ce_ref(x, y, 0.3))


@pytest.mark.parametrize(
    "kwargs, make_input, exc, match",
    [
        ({}, lambda x, y: (x, torch.tensor([0, 1, 5, 2, -1, 7])), ValueError, "3 of 6 targets"),
        ({}, lambda x, y: (x[..., :1], torch.zeros(N, dtype=torch.long)), ValueError, "C = 1"),
        ({}, lambda x, y: (x, y[:4]), ValueError, r"shape \[N\] = \[6\]"),
        ({}, lambda x, y: (x[None], y), ValueError, r"\(1, 4, 6, 5\)"),
        ({}, lambda x, y: (x, y.double()), TypeError, "integer class indices"),
        (
            {},
            lambda x, y: (x.index_fill(1, torch.tensor([1, 3]), math.nan), y),
            ValueError,
            "2 of 6 samples",
        ),
        ({"base": lambda i, t: i.sum()}, lambda x, y: (x, y), ValueError, r"got \[\]"),
    ],
)
def test_errors_in_forward(kwargs, make_input, exc, match):
    x, y = batch(10)
    with pytest.raises(exc, match=match):
        ConfidenceAwareLoss(**kwargs)(*make_input(x, y))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tau": "median"}, "tau must be one of"),
        ({"tau": math.inf}, "finite number"),
        ({"lam": 0.0}, "lam must be > 0"),
        ({"reduction": "avg"}, "reduction must be one of"),
        ({"time_dim": 2}, "time_dim must be 0"),
        ({"base": "nll"}, "base must be one of"),
        ({"label_smoothing": 0.1}, "only to base='label_smoothing_ce'"),
        ({"base": "mse_rate"}, "tau='fixed'"),
        ({"tau": "ema", "momentum": 0.0}, "momentum"),
    ],
)
def test_errors_in_constructor(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConfidenceAwareLoss(**kwargs)


# --- TETLoss ---------------------------------------------------------------------------


@pytest.mark.parametrize("t_steps", [1, 4])
def test_tet_equals_spikingjelly_at_lam_zero(t_steps):
    x, y = batch(11)
    x = x[:t_steps]
    sj = temporal_efficient_training_cross_entropy(x, y)
    assert TETLoss(lam=0.0)(x, y).item() == pytest.approx(sj.item(), rel=1e-12)
    assert tet_loss(x, y, lam=0.0).mean().item() == pytest.approx(sj.item(), rel=1e-12)


def test_tet_module_matches_formula_in_both_layouts():
    x, y = batch(12)
    expected = tet_ref(x, y, 0.3, 0.5)
    # Paper form: (1 - lam) * TET-CE + lam * MSE over every element of O.
    paper = 0.7 * temporal_efficient_training_cross_entropy(x, y) + 0.3 * F.mse_loss(
        x, torch.full_like(x, 0.5)
    )
    assert TETLoss(0.3, 0.5)(x, y).item() == pytest.approx(paper.item(), rel=1e-12)
    torch.testing.assert_close(TETLoss(0.3, 0.5, reduction="none")(x, y), expected)
    torch.testing.assert_close(
        TETLoss(0.3, 0.5, reduction="sum", time_dim=1)(x.transpose(0, 1), y), expected.sum()
    )
    with pytest.raises(ValueError, match="lam must be in"):
        TETLoss(lam=1.5)
    with pytest.raises(ValueError, match="outside the class range"):
        TETLoss()(x, y + C)


def test_time_mean_cross_entropy_equals_ce_of_the_mean():
    from sj_ext.loss import TimeMeanCrossEntropy

    torch.manual_seed(0)
    out = torch.randn(4, 6, 5, dtype=torch.float64)
    y = torch.randint(0, 5, (6,))
    expected = -torch.log_softmax(out.mean(0), 1)
    smooth = 0.1
    expected = (1 - smooth) * expected.gather(1, y[:, None])[:, 0] + smooth * expected.mean(1)
    loss = TimeMeanCrossEntropy(label_smoothing=smooth, reduction="none")
    torch.testing.assert_close(loss(out, y), expected)
    torch.testing.assert_close(
        TimeMeanCrossEntropy(time_dim=1)(out.transpose(0, 1), y),
        -torch.log_softmax(out.mean(0), 1).gather(1, y[:, None]).mean(),
    )
    with pytest.raises(ValueError, match="outside the class range"):
        loss(out, torch.full((6,), 5))


def test_logit_scale_multiplies_the_time_mean_before_the_cross_entropy():
    torch.manual_seed(0)
    rates = torch.rand(4, 6, 10)  # [T, N, C] firing rates in [0, 1]
    y = torch.randint(0, 10, (6,))
    ref = torch.nn.functional.cross_entropy(8.0 * rates.mean(0), y, reduction="none")
    ce = TimeMeanCrossEntropy(logit_scale=8.0, reduction="none")
    torch.testing.assert_close(ce(rates, y), ref)
    cl = ConfidenceAwareLoss(base="ce", tau="fixed", lam=1.0, logit_scale=8.0)
    cl(rates, y)
    torch.testing.assert_close(cl.last_loss, ref)
    smooth = ConfidenceAwareLoss(base="label_smoothing_ce", label_smoothing=0.1, logit_scale=8.0)
    smooth(rates, y)
    ref_smooth = torch.nn.functional.cross_entropy(
        8.0 * rates.mean(0), y, reduction="none", label_smoothing=0.1
    )
    torch.testing.assert_close(smooth.last_loss, ref_smooth)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_logit_scale_must_be_positive_and_finite(bad):
    with pytest.raises(ValueError, match="logit_scale must be a finite number > 0"):
        ConfidenceAwareLoss(logit_scale=bad)
    with pytest.raises(ValueError, match="logit_scale must be a finite number > 0"):
        TimeMeanCrossEntropy(logit_scale=bad)


def test_logit_scale_is_refused_for_bases_it_does_not_apply_to():
    with pytest.raises(ValueError, match="logit_scale applies only to base='ce'"):
        ConfidenceAwareLoss(base="mse_rate", tau="batch", logit_scale=10.0)


def test_the_registered_mse_is_the_plif_papers_firing_rate_loss():
    torch.manual_seed(0)
    spikes = (torch.rand(6, 5, 4) < 0.4).float()  # [T, N, C]
    y = torch.tensor([0, 3, 1, 1, 2])
    loss = LOSSES.build("mse")
    expected = F.mse_loss(spikes.mean(0), F.one_hot(y, 4).float())
    torch.testing.assert_close(loss(spikes, y), expected)
    per = LOSSES.build("mse", reduction="none", time_dim=1)(spikes.transpose(0, 1), y)
    rates = spikes.mean(0)
    hand = [sum((rates[i, c] - float(c == y[i])) ** 2 for c in range(4)) / 4 for i in range(5)]
    torch.testing.assert_close(per, torch.stack(hand))
