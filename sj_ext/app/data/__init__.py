"""Datasets for the engine: registry entries returning a :class:`DataSpec`.

A dataset builder is registered in :data:`sj_ext.app.registry.DATASETS` and called
as ``builder(root=..., T=..., **data.args)``. It returns a :class:`DataSpec`
whose datasets yield ``(x, label)``:

* ``layout='static'``: ``x`` is one image ``[C, H, W]`` (values in [0, 1] for
  Poisson encoding); the engine encodes a batch ``[N, C, H, W]`` into
  ``[T, N, C, H, W]`` (:func:`encode`).
* ``layout='sequence'``: ``x`` is already ``[T, ...]`` (event frames); the
  engine transposes a batch ``[N, T, ...]`` to ``[T, N, ...]``.
"""

from . import (
    digits,  # noqa: F401  (registers 'digits')
    neuromorphic,  # noqa: F401  (nmnist, cifar10dvs, dvsgesture)
    vision,  # noqa: F401  (mnist, cifar10, ..., tinyimagenet, imagenet)
)
from .spec import LAYOUTS, DataSpec, encode, to_time_major

__all__ = ["DataSpec", "encode", "to_time_major", "LAYOUTS"]
