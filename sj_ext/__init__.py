"""sj_ext: newest SNN training methods as SpikingJelly 2.0 components.

Sub-packages:

* :mod:`sj_ext.neuron`     -- spiking neurons (``AdaptiveThresholdLIF``)
* :mod:`sj_ext.surrogate`  -- surrogate gradients (``DynamicRect`` ...)
* :mod:`sj_ext.functional` -- the equations as pure torch functions
"""

__version__ = "0.1.0"
