"""The event-camera datasets tonic reads: their files, folder layouts and packages.

Torch-free, so that ``sj-ext validate`` can name a missing package before
anything heavy is imported.
"""

import importlib.util
from dataclasses import dataclass

__all__ = [
    "NEUROMORPHIC_EXTRA",
    "TONIC",
    "MissingPackageError",
    "missing_packages",
    "require_packages",
]

#: how to install what the event-camera datasets need beyond the base install
NEUROMORPHIC_EXTRA = 'pip install -e ".[neuromorphic]"'


class MissingPackageError(RuntimeError):
    """A dataset needs a package of the ``neuromorphic`` extra that is not installed."""


@dataclass(frozen=True)
class _Tonic:
    """A tonic dataset: its class name, its files, the layout its folder must have, and the
    packages that read it (tonic; aedat for AEDAT 4 recordings)."""

    cls_name: str
    ext: str
    layout: str
    num_classes: int
    packages: tuple[str, ...] = ("tonic",)

    def tonic_class(self):
        import tonic.datasets

        return getattr(tonic.datasets, self.cls_name)


def missing_packages(name: str) -> str:
    """What dataset ``name`` lacks here, in words ('' when nothing, or not an event dataset)."""
    spec = TONIC.get(name)
    missing = [p for p in spec.packages if importlib.util.find_spec(p) is None] if spec else []
    if not missing:
        return ""
    return (
        f"dataset {name!r} needs {' and '.join(missing)}, which the base install leaves out: "
        f"{NEUROMORPHIC_EXTRA}"
    )


def require_packages(name: str) -> None:
    """:class:`MissingPackageError` naming the extra when ``name``'s packages are missing."""
    missing = missing_packages(name)
    if missing:
        raise MissingPackageError(missing)


TONIC = {
    "nmnist": _Tonic(
        "NMNIST",
        ".bin",
        "Train/<digit>/*.bin and Test/<digit>/*.bin (N-MNIST's train.zip and test.zip, extracted)",
        10,
    ),
    "cifar10dvs": _Tonic(
        "CIFAR10DVS",
        ".aedat4",
        "<class>/*.aedat4 for airplane, automobile, ..., truck (the AEDAT4 release, extracted)",
        10,
        ("tonic", "aedat"),
    ),
    "dvsgesture": _Tonic(
        "DVSGesture",
        ".npy",
        "ibmGestureTrain/userNN_<lighting>/<label>.npy and "
        "ibmGestureTest/... (tonic's preprocessed DVS128 Gesture)",
        11,
    ),
}
