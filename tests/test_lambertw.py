"""lambert_w0 against scipy.special.lambertw and the defining identity w e^w = x."""

import math

import numpy as np
import pytest
import torch
from scipy.special import lambertw

from sj_ext.functional.curriculum import lambert_w0

INV_E = math.exp(-1.0)


def dense_grid() -> np.ndarray:
    """The domain [-1/e, inf): near the branch point, around 0 (both signs), and huge x."""
    return np.concatenate(
        [
            -INV_E + np.logspace(-14, np.log10(INV_E), 2000),
            np.linspace(-0.36, 20.0, 4000),
            -np.logspace(-300, np.log10(0.36), 1000),
            np.logspace(-300, 300, 2000),
        ]
    )


def scipy_w(x: np.ndarray) -> np.ndarray:
    w = lambertw(x)
    assert np.all(np.abs(w.imag) == 0)
    return w.real


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_scipy_on_dense_grid(dtype):
    x = torch.tensor(dense_grid(), dtype=dtype)
    x = x[torch.isfinite(x) & ((x.abs() > 1e-36) | (x == 0))]  # float32: drop over/underflow
    x = x[x.double() > -INV_E]  # float32 rounding may push points below the domain
    w = lambert_w0(x)
    assert w.dtype == dtype
    ref = scipy_w(x.double().numpy())
    np.testing.assert_allclose(w.double().numpy(), ref, rtol=1e-6, atol=0)


def test_float64_satisfies_identity_to_rounding():
    x = torch.tensor(dense_grid(), dtype=torch.float64)
    x = x[(x != 0) & (x.abs() < 1e300)]  # relative error defined, w e^w finite
    w = lambert_w0(x)
    rel = (w * w.exp() - x).abs() / x.abs()
    # exp(w) alone is only good to |w| eps relative (its argument is rounded)
    assert (rel <= 4 * torch.finfo(torch.float64).eps * (1 + w.abs())).all()


# bfloat16 is left out: it rounds -1/e to -0.3671875, inside the domain.
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_branch_point_zero_and_special_values(dtype):
    x = torch.tensor([-INV_E, 0.0, math.inf, math.nan, -INV_E - 0.01, -1.0], dtype=dtype)
    w = lambert_w0(x)
    assert w.dtype == dtype
    assert w[0].item() == -1.0  # -1/e rounded to the dtype (just below it) is the branch point
    assert w[1].item() == 0.0
    assert w[2].item() == math.inf
    assert torch.isnan(w[3:]).all()  # NaN in, and below the domain


def test_branch_point_neighbourhood_matches_scipy():
    # Just above -1/e, where W is sqrt-singular: W ~ -1 + sqrt(2 (1 + e x)).
    x = np.nextafter(-INV_E, 0.0) + np.array([0.0, 1e-16, 1e-14, 1e-12, 1e-10, 1e-8, 1e-6])
    w = lambert_w0(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(w, scipy_w(x), rtol=1e-6)
    assert np.all(w > -1.0) and np.all(np.diff(w) > 0)  # strictly increasing off the branch


def test_known_values_and_large_arguments():
    x = torch.tensor([1.0, math.e, 1e30, 1e300, 1e-300, -1e-300], dtype=torch.float64)
    w = lambert_w0(x)
    omega = 0.5671432904097838  # W(1), the omega constant
    expected = [omega, 1.0, *scipy_w(np.array([1e30, 1e300])), 1e-300, -1e-300]
    np.testing.assert_allclose(w.numpy(), expected, rtol=4e-15)
    assert lambert_w0(torch.tensor(1e30)).item() == pytest.approx(64.90463377004612, rel=1e-6)
    assert lambert_w0(torch.tensor(3.0e38)).item() == pytest.approx(
        scipy_w(np.array([3.0e38]))[0], rel=1e-6
    )  # near float32's max: no overflow


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    x = torch.linspace(-0.36, 50.0, 501).to(dtype)
    w = lambert_w0(x)
    assert w.dtype == dtype
    assert torch.equal(w, lambert_w0(x.float()).to(dtype))


def test_shape_is_kept_and_integers_are_promoted():
    x = torch.arange(12).reshape(3, 4)
    w = lambert_w0(x)
    assert w.shape == (3, 4) and w.dtype == torch.get_default_dtype()
    np.testing.assert_allclose(w.double().numpy(), scipy_w(x.double().numpy()), rtol=1e-6)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_tensors_device():
    x = torch.tensor(dense_grid(), dtype=torch.float64)
    w = lambert_w0(x.cuda())
    assert w.is_cuda
    np.testing.assert_allclose(w.cpu().numpy(), scipy_w(x.numpy()), rtol=1e-6)
