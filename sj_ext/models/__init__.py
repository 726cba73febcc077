"""Networks for the engine, registered in :data:`sj_ext.registry.MODELS`.

A model builder is called with the keyword arguments it names among
``num_classes``, ``in_channels`` and ``spiking_neuron`` (a zero-argument
factory of configured neurons), plus the recipe's ``model.args``. It returns a
module that maps ``[T, N, *]`` to ``[T, N, num_classes]`` (the engine sets
every SpikingJelly module to multi-step mode).
"""

from . import small  # noqa: F401  (registers the small built-in nets)
