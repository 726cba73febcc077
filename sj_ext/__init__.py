"""sj_ext: newest SNN training methods as SpikingJelly 2.0 components.

The plugin, what goes upstream (importing ``sj_ext`` itself loads none of it):

* :mod:`sj_ext.neuron`     -- spiking neurons (``AdaptiveThresholdLIF``, ``DilatedWindowLIF``)
* :mod:`sj_ext.surrogate`  -- surrogate gradients (``DynamicRect`` ...)
* :mod:`sj_ext.functional` -- the equations as pure torch functions, one ``LIFParameters``
* :mod:`sj_ext.fused_lif`  -- the fused CUDA kernels of both neurons (``backend='cupy'``)
* :mod:`sj_ext.loss`       -- the CL-SNN curriculum loss, TET, time-mean CE, rate MSE
* :mod:`sj_ext.models`     -- the papers' networks, taking ``spiking_neuron=``
* :mod:`sj_ext.options`   -- every option's choices and defaults

The training application around it (recipes, engine, monitors, report, the
``sj-ext`` command) is :mod:`sj_ext.app`; the plugin never imports it.
"""

__version__ = "0.1.0"
