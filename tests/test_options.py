"""Every choice list and default of :mod:`sj_ext.options` is the one its consumers use.

The recipe schema, the neurons, the functional parameters and the models take
each listed choice, refuse anything else with the option's name and choices,
and default to the one default.
"""

import pytest
import torch

from sj_ext import options
from sj_ext.app.schema import SCHEMA, RecipeError, check_schema
from sj_ext.functional import LIFParameters, membrane_stats, partition
from sj_ext.models.grouping import alternating_windows
from sj_ext.neuron import AdaptiveThresholdLIF, DilatedWindowLIF, set_backend


def recipe(**neuron) -> dict:
    return {
        "data": {"name": "d", "batch_size": 2, "T": 2},
        "model": {"name": "m"},
        "neuron": {"name": "n", **neuron},
        "optim": {"lr": 0.1},
        "train": {"epochs": 1},
    }


def test_the_defaults_agree_from_the_recipe_to_the_functions():
    assert SCHEMA["neuron"]["backend"].default == options.DEFAULT_BACKEND
    for node in (AdaptiveThresholdLIF(), DilatedWindowLIF()):
        assert node.backend == options.DEFAULT_BACKEND
        assert node.stats == LIFParameters().stats == options.DEFAULT_STATS
    assert DilatedWindowLIF().window == LIFParameters().window == options.DEFAULT_WINDOW


@pytest.mark.parametrize("backend", options.BACKENDS)
def test_every_backend_is_taken(backend):
    assert check_schema(recipe(backend=backend))["neuron"]["backend"] == backend
    assert AdaptiveThresholdLIF(backend=backend).backend == backend
    assert set_backend(DilatedWindowLIF(), backend) == 1


@pytest.mark.parametrize("stats", options.STATS)
def test_every_statistic_is_taken(stats):
    h = torch.randn(4, 3, 5)
    mu, sigma = membrane_stats(h, stats)
    assert mu.shape == sigma.shape == ((1, 3, 1) if stats == "channel" else ())
    node = AdaptiveThresholdLIF(stats=stats, step_mode="m")
    assert node(torch.randn(2, 4, 3, 5)).shape == (2, 4, 3, 5)


@pytest.mark.parametrize("window", options.WINDOWS)
def test_every_window_is_taken(window):
    x = torch.arange(16.0).view(1, 4, 4)
    assert partition(x, (1, 2), (2, 2), window).shape == (4, 1, 2, 2)
    assert DilatedWindowLIF(window=window)(torch.randn(2, 3, 4, 4)).shape == (2, 3, 4, 4)
    assert alternating_windows(window, 2) == [window, *(w for w in options.WINDOWS if w != window)]


@pytest.mark.parametrize("projection", options.PROJECTIONS)
@pytest.mark.parametrize("threshold", options.THRESHOLDS)
def test_every_projection_and_threshold_kind_is_taken(projection, threshold):
    node = DilatedWindowLIF(projection=projection, threshold=threshold, step_mode="m")
    assert node(torch.randn(2, 2, 3, 4, 4)).shape == (2, 2, 3, 4, 4)
    assert node.threshold == threshold


@pytest.mark.parametrize(
    "build,name,choices",
    [
        (lambda: AdaptiveThresholdLIF(backend="triton"), "backend", options.BACKENDS),
        (lambda: set_backend(DilatedWindowLIF(), "triton"), "backend", options.BACKENDS),
        (lambda: AdaptiveThresholdLIF(stats="batch"), "stats", options.STATS),
        (lambda: membrane_stats(torch.randn(4, 3), "batch"), "stats", options.STATS),
        (lambda: AdaptiveThresholdLIF(step_mode="x"), "step_mode", options.STEP_MODES),
        (lambda: DilatedWindowLIF(window="overlap"), "window", options.WINDOWS),
        (lambda: DilatedWindowLIF(threshold="dynamic"), "threshold", options.THRESHOLDS),
        (lambda: DilatedWindowLIF(projection="mul"), "projection", options.PROJECTIONS),
        (lambda: alternating_windows("blocks", 2), "first_window", options.WINDOWS),
    ],
)
def test_anything_else_is_refused_naming_the_option_and_its_choices(build, name, choices):
    with pytest.raises(ValueError, match=name) as info:
        build()
    assert str(choices) in str(info.value)


def test_the_schema_refuses_a_backend_not_listed():
    with pytest.raises(RecipeError, match="neuron.backend: must be one of"):
        check_schema(recipe(backend="triton"))
