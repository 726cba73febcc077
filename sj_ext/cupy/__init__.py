"""Deprecated: the fused kernels moved to :mod:`sj_ext.fused_lif` (alias until the next release).

``import sj_ext.cupy`` and its submodules (``sj_ext.cupy.host``, ``.device``,
``.lif``, ``.source``) give the modules of :mod:`sj_ext.fused_lif`, with a
``DeprecationWarning``.
"""

import sys
import warnings

from .. import fused_lif
from ..fused_lif import *  # noqa: F403  (the names of the package it stands for)
from ..fused_lif import __all__, coverage, device, host, lif, source  # noqa: F401

warnings.warn(
    "sj_ext.cupy is deprecated; import sj_ext.fused_lif", DeprecationWarning, stacklevel=2
)
for _name in ("coverage", "device", "host", "lif", "source"):
    sys.modules[f"{__name__}.{_name}"] = getattr(fused_lif, _name)
