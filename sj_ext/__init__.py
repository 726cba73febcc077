"""sj_ext: newest SNN training methods as SpikingJelly 2.0 components.

Sub-packages (importing ``sj_ext`` itself loads none of them):

* :mod:`sj_ext.neuron`     -- spiking neurons (``AdaptiveThresholdLIF``, ``DilatedWindowLIF``)
* :mod:`sj_ext.surrogate`  -- surrogate gradients (``DynamicRect`` ...)
* :mod:`sj_ext.functional` -- the equations as pure torch functions, one ``LIFParameters``
* :mod:`sj_ext.fused_lif`  -- the fused CUDA kernels of both neurons (``backend='cupy'``)
* :mod:`sj_ext.loss`       -- the CL-SNN curriculum loss, TET, time-mean CE, rate MSE
* :mod:`sj_ext.recipe`, :mod:`sj_ext.engine` -- YAML recipes and the training engine
  (``sj-ext``); :mod:`sj_ext.monitor`, :mod:`sj_ext.report` -- what the methods do
"""

__version__ = "0.1.0"
