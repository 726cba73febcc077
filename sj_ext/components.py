"""Deprecated (goes in the next release): every builder now registers where it is defined.

Importing :mod:`sj_ext.recipe` (or :mod:`sj_ext.engine`) fills every registry; the
optimizer and schedule builders that lived here are in :mod:`sj_ext.optim`.
Importing this module warns with a :class:`DeprecationWarning`.
"""

import warnings

from . import recipe  # noqa: F401  (fills every registry)
from .optim import adam, adamw, constant, cosine, sgd

__all__ = ["sgd", "adam", "adamw", "cosine", "constant"]

warnings.warn(
    "sj_ext.components is deprecated: builders register on import of their package "
    "(import sj_ext.recipe for all of them); the optimizers and schedules are in sj_ext.optim",
    DeprecationWarning,
    stacklevel=2,
)
