"""One parameter object from neuron to kernel, the layers, and the deprecated names of before.

The old names keep working for one release (with a ``DeprecationWarning``) and
give exactly what the new ones give; the functional layer imports no neuron.
"""

import textwrap
import warnings
from dataclasses import replace

import pytest
import torch
from spikingjelly.activation_based import surrogate

import sj_ext.functional as F
from sj_ext.functional import LIFParameters, lif_multi_step, lif_step
from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF, set_backend
from sj_ext.surrogate import DynamicRect

DT = torch.float64


def test_the_functional_layer_imports_no_neuron_and_no_kernel(run_python):
    out = run_python(
        textwrap.dedent(
            """
        import sys
        import sj_ext.functional
        print(sorted(m for m in sys.modules if m.startswith(("sj_ext.neuron", "sj_ext.fused_lif"))))
        """
        )
    )
    assert out.strip() == "[]"


def test_a_node_hands_its_attributes_to_the_functions_in_one_object():
    node = DilatedWindowLIF(groups=(2, 3), window="block", projection="add", threshold="adaptive")
    node.f_c = 0.7  # an attribute changed after construction takes effect
    params = node.lif_parameters((4, 3, 6, 6))
    assert params == LIFParameters(
        decay_input=True,
        v_reset=0.0,
        surrogate_function=node.surrogate_function,
        detach_reset=False,
        f_c=0.7,
        stats="layer",
        stats_group=None,
        dims=(2, 3),
        groups=(2, 3),
        window="block",
        projection="add",
        theta=node.theta,
    )
    flat = node.lif_parameters((4, 10))  # no map to group: ungrouped
    assert (flat.dims, flat.groups) == ((), ())
    adaptive = AdaptiveThresholdLIF(tau=3.0, v_reset=None, stats="channel", detach_reset=True)
    assert adaptive.lif_parameters((2, 5)) == LIFParameters(
        decay_input=True,
        v_reset=None,
        surrogate_function=adaptive.surrogate_function,
        detach_reset=True,
        stats="channel",
    )


def test_dilated_window_keeps_its_threshold_kind_once():
    for kind, adaptive in (("fixed", False), ("adaptive", True)):
        node = DilatedWindowLIF(threshold=kind)
        assert (node.threshold, node.adaptive) == (kind, adaptive)
        assert f"threshold={kind}" in repr(node)
    node = DilatedWindowLIF(threshold="fixed")
    node.adaptive = True  # the one fact: the kind follows it
    assert node.threshold == "adaptive"
    with pytest.raises(AttributeError):
        node.threshold = "fixed"


def test_one_step_for_both_neurons_grouped_or_not():
    """An ungrouped step is the grouped step with one group, and 'none' keeps groups apart."""
    torch.manual_seed(0)
    x, v = torch.randn(3, 4, 6, 6, dtype=DT), torch.rand(3, 4, 6, 6, dtype=DT)
    plain = LIFParameters(surrogate_function=DynamicRect(), f_c=0.9)
    for grid in ((1, 1), (2, 3)):
        one = replace(
            plain, dims=(2, 3), groups=grid, projection="none" if grid != (1, 1) else "sine"
        )
        for got, want in zip(
            lif_step(x, v, 0.5, None, one), lif_step(x, v, 0.5, None, plain), strict=True
        ):
            assert torch.equal(got, want)


def test_the_adjoint_loop_runs_for_every_unchained_charge():
    """projection='none' over a grid runs the one-node loop, equal to autograd of the steps."""
    torch.manual_seed(1)
    x = torch.randn(5, 2, 4, 4, 4, dtype=DT, requires_grad=True)
    v = torch.zeros(2, 4, 4, 4, dtype=DT)
    params = LIFParameters(surrogate_function=surrogate.ATan(), dims=(2, 3), groups=(2, 2))
    spikes, *_ = lif_multi_step(x, v, 0.5, 1.0, params)
    assert type(spikes.grad_fn).__name__ == "_AdjointLIFBackward"
    (grad,) = torch.autograd.grad((spikes * torch.arange(4, dtype=DT)).sum(), x)
    steps, *_ = F.run_steps(
        lambda xt, vt, threshold: lif_step(xt, vt, 0.5, threshold, params), x, v, 1.0
    )
    (want,) = torch.autograd.grad((steps * torch.arange(4, dtype=DT)).sum(), x)
    assert torch.equal(spikes, steps)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "old,new", [("adaptive_lif_step", lif_step), ("grouped_lif_step", lif_step)]
)
def test_deprecated_step_names_warn_and_give_the_same_results(old, new):
    torch.manual_seed(2)
    x, v = torch.randn(2, 4, 6, dtype=DT), torch.zeros(2, 4, 6, dtype=DT)
    options = dict(
        decay_input=True, v_reset=0.0, surrogate_function=DynamicRect(), detach_reset=False
    )
    if old == "grouped_lif_step":
        options.update(dims=(2,), groups=(3,), window="dilated", projection="sine")
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated"):
        fn = getattr(F, old)
    assert fn is new
    with pytest.warns(DeprecationWarning, match="LIFParameters"):
        got = fn(x, v, 0.5, None, **options)
    for a, b in zip(got, new(x, v, 0.5, None, LIFParameters(**options)), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("old", ["adaptive_lif_multi_step", "grouped_lif_multi_step"])
def test_deprecated_multi_step_names_warn_and_give_the_same_results(old):
    torch.manual_seed(3)
    x, v = torch.randn(3, 2, 8, dtype=DT), torch.zeros(2, 8, dtype=DT)
    options = dict(
        decay_input=False, v_reset=None, surrogate_function=DynamicRect(), detach_reset=True
    )
    with pytest.warns(DeprecationWarning):
        fn = getattr(F, old)
    with pytest.warns(DeprecationWarning):
        got = fn(x, v, 0.5, **options)  # thresholds defaulted, as before
    want = lif_multi_step(x, v, 0.5, None, LIFParameters(**options))
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


def test_keyword_options_and_parameters_at_once_are_refused():
    x = torch.zeros(2, 3)
    with pytest.raises(TypeError, match="not both"):
        lif_step(x, x, 0.5, None, LIFParameters(surrogate_function=DynamicRect()), f_c=2.0)
    with pytest.raises(TypeError, match="missing the LIFParameters"):
        lif_step(x, x, 0.5, None)


def test_set_backend_moved_to_the_neurons():
    with pytest.warns(DeprecationWarning, match="sj_ext.neuron.set_backend"):
        old = F.set_backend
    assert old is set_backend
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (
            set_backend(torch.nn.Sequential(AdaptiveThresholdLIF(), DilatedWindowLIF()), "cupy")
            == 2
        )


def test_the_cupy_package_is_a_deprecated_alias_of_fused_lif(run_python):
    out = run_python(
        textwrap.dedent(
            """
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import sj_ext.cupy
            from sj_ext.cupy.host import HostLauncher
            from sj_ext.cupy.lif import lif_multi_step
        import sj_ext.fused_lif as new
        print([str(w.message) for w in caught if w.category is DeprecationWarning])
        print(HostLauncher is new.host.HostLauncher, lif_multi_step is new.lif_multi_step,
              sj_ext.cupy.unsupported_reason is new.unsupported_reason)
        """
        )
    )
    warned, same = out.strip().split("\n")
    assert "sj_ext.cupy is deprecated; import sj_ext.fused_lif" in warned
    assert same == "True True True"
