"""Every component a recipe can name, registered: the plugin's and the application's.

The plugin (:mod:`sj_ext.neuron`, :mod:`sj_ext.surrogate`, :mod:`sj_ext.models`,
:mod:`sj_ext.loss`) holds plain classes and functions and knows no registry;
this module names them for the recipes. The application's datasets
(:mod:`sj_ext.app.data`) and optimizers / schedules (:mod:`sj_ext.app.optim`)
register themselves where they are defined; importing this module imports
them too, so the registries it re-exports are complete.
"""

from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based import surrogate as sj_surrogate

from .. import loss, surrogate
from ..models import grouping, plif_nets, resnet, small, vgg
from ..neuron import AdaptiveThresholdLIF, DilatedWindowLIF
from . import data, optim  # noqa: F401  (register the datasets, optimizers and schedules)
from .registry import (
    DATASETS,
    LOSSES,
    MODELS,
    NEURONS,
    OPTIMIZERS,
    SCHEDULES,
    SURROGATES,
    Registry,
)

__all__ = [
    "PLUGIN_NAMES",
    "Registry",
    "DATASETS",
    "MODELS",
    "NEURONS",
    "SURROGATES",
    "LOSSES",
    "OPTIMIZERS",
    "SCHEDULES",
]

#: the plugin's components by registry and name (the datasets, optimizers and schedules
#: register themselves in the application's modules)
PLUGIN_NAMES = {
    NEURONS: {
        "lif": sj_neuron.LIFNode,
        "plif": sj_neuron.ParametricLIFNode,
        "adaptive_lif": AdaptiveThresholdLIF,
        "dilated_window_lif": DilatedWindowLIF,
    },
    SURROGATES: {
        "sigmoid": sj_surrogate.Sigmoid,
        "atan": sj_surrogate.ATan,
        "rect": sj_surrogate.Rect,
        "piecewise_quadratic": sj_surrogate.PiecewiseQuadratic,
        "dynamic_rect": surrogate.DynamicRect,
        "dynamic_atan": surrogate.DynamicATan,
        "dynamic_sigmoid": surrogate.DynamicSigmoid,
    },
    MODELS: {
        "small_cnn": small.small_cnn,
        "grouping_cnn": grouping.grouping_cnn,
        "grouping_rnn": grouping.grouping_rnn,
        "vggsnn": vgg.vggsnn,
        "parametric_lif_net": plif_nets.parametric_lif_net,
        "resnet19": resnet.resnet19,
        "sew_resnet_small": resnet.sew_resnet_small,
        "resnet18": resnet.resnet18,
        "resnet34": resnet.resnet34,
    },
    LOSSES: {
        "ce": loss.TimeMeanCrossEntropy,
        "mse": loss.FiringRateMSE,
        "tet": loss.TETLoss,
        "confidence_aware": loss.ConfidenceAwareLoss,
    },
}
for _registry, _builders in PLUGIN_NAMES.items():
    for _name, _builder in _builders.items():
        _registry.register(_name, _builder)
