"""Networks for the engine, named for the recipes in :data:`sj_ext.app.components.MODELS`.

A model builder is called with the keyword arguments it names among
``num_classes``, ``in_channels`` and ``spiking_neuron`` (a zero-argument
factory of configured neurons), plus its own arguments. It returns a
module that maps ``[T, N, *]`` to ``[T, N, num_classes]`` (the engine sets
every SpikingJelly module to multi-step mode).
"""

from . import (
    grouping,  # noqa: F401  (grouping_cnn, grouping_rnn)
    plif_nets,  # noqa: F401  (parametric_lif_net)
    resnet,  # noqa: F401  (resnet19, resnet18, resnet34)
    small,  # noqa: F401  (registers the small built-in nets)
    vgg,  # noqa: F401  (vggsnn)
)
