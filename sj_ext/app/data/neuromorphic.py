"""Event-camera datasets through tonic: N-MNIST, CIFAR10-DVS, DVS128 Gesture.

tonic reads the recordings (its readers, its folder layouts under
``root/<tonic class name>/``) and bins them into ``T`` frames with
``tonic.transforms.ToFrame``; samples are ``layout='sequence'`` tensors
``[T, 2, H, W]`` (float event counts per polarity).

Frames are cached on disk, one ``.npy`` per recording, under
``<cache_dir>/v1-T<T>-<split_by>-<H>x<W>/<the recording's path>``
(``cache_dir`` defaults to ``root/<tonic class name>/frames``): every setting
the frames depend on is in the folder name, so changing ``T`` (or the binning,
or the size) never reads frames made for other settings. Files are written
atomically (safe with several loader workers).

Random augmentations (``flip``, ``roll``) apply to the training split after
the cache, so they differ at every epoch.
"""

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..registry import DATASETS
from .files import download_or_raise, file_check, not_found, require_root
from .spec import DataSpec
from .tonic_datasets import TONIC, MissingPackageError, require_packages

__all__ = ["EventFrames", "MissingPackageError", "per_class_split", "frames_key", "check_frames"]

CACHE_FORMAT = 1
SPLIT_BY = ("number", "time")


def frames_key(T: int, split_by: str, height: int, width: int) -> str:
    """The cache folder name of frames made with these settings."""
    return f"v{CACHE_FORMAT}-T{T}-{split_by}-{height}x{width}"


def _to_frames(events: np.ndarray, sensor_size, T: int, split_by: str) -> np.ndarray:
    """Events -> ``[T, P, H, W]`` counts: ``T`` bins of equal event count or equal duration."""
    from tonic.transforms import ToFrame

    bins = {"n_event_bins": T} if split_by == "number" else {"n_time_bins": T}
    return ToFrame(sensor_size=sensor_size, **bins)(events)


def _check_fraction(train_fraction: float) -> None:
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"data.args.train_fraction must lie in (0, 1), got {train_fraction}")


def check_frames(T: int = 10, split_by: str = "number", roll: int = 0, train_fraction=0.9, **_):
    """The range checks of an event dataset's arguments (``sj-ext validate`` runs them too)."""
    if split_by not in SPLIT_BY:
        raise ValueError(f"data.args.split_by must be one of {SPLIT_BY}, got {split_by!r}")
    if T < 1:
        raise ValueError(f"data.T must be >= 1, got {T}")
    if roll < 0:
        raise ValueError(f"data.args.roll must be >= 0, got {roll}")
    _check_fraction(train_fraction)


class EventFrames(Dataset):
    """Recordings of a tonic dataset as frames ``[T, 2, H, W]`` (float32), cached on disk.

    :param events: a tonic dataset (``data``: file paths, ``targets``: labels,
        ``location_on_system``: its folder, ``sensor_size``: ``(W, H, P)``)
    :param indices: the recordings of ``events`` this dataset holds
    :param T: frames per recording
    :param split_by: ``'number'`` (bins of equal event count, as the PLIF paper)
        or ``'time'`` (bins of equal duration)
    :param size: resize the frames to ``size x size`` (bilinear, antialiased) before
        caching; ``None`` keeps the sensor's size
    :param cache_dir: where the cache folders lie
    :param flip: flip every frame of a recording horizontally with probability 0.5
    :param roll: shift the frames by a random ``(dy, dx)`` in ``[-roll, roll]`` (``torch.roll``)
    """

    def __init__(
        self,
        events,
        indices,
        T: int,
        split_by: str,
        size: int | None,
        cache_dir: Path,
        flip: bool = False,
        roll: int = 0,
    ):
        check_frames(T, split_by, roll)
        self.events = events
        self.indices = list(indices)
        self.T = T
        self.split_by = split_by
        self.size = size
        width, height, _ = events.sensor_size
        shape = (height, width) if size is None else (size, size)
        self.cache = Path(cache_dir) / frames_key(T, split_by, *shape)
        self.flip = flip
        self.roll = roll

    def __len__(self) -> int:
        return len(self.indices)

    def relative_path(self, k: int) -> Path:
        """Recording ``k``'s path relative to the dataset folder."""
        return Path(self.events.data[self.indices[k]]).relative_to(self.events.location_on_system)

    def label(self, k: int) -> int:
        return int(self.events.targets[self.indices[k]])

    def frames(self, k: int) -> torch.Tensor:
        """Recording ``k`` as ``[T, 2, H, W]`` float32 frames, from the cache or made and cached."""
        path = self.cache / self.relative_path(k).with_suffix(".npy")
        if path.is_file():
            return torch.from_numpy(np.load(path)).float()
        recording, _ = self.events[self.indices[k]]
        frames = _to_frames(recording, self.events.sensor_size, self.T, self.split_by)
        if self.size is None:
            array = frames
        else:
            from torchvision.transforms.functional import resize

            array = resize(torch.from_numpy(frames).float(), [self.size, self.size]).numpy()
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.part")
        with open(partial, "wb") as f:
            np.save(f, array)
        os.replace(partial, path)
        return torch.from_numpy(array).float()

    def __getitem__(self, k: int):
        x = self.frames(k)
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        if self.roll:
            dy, dx = torch.randint(-self.roll, self.roll + 1, (2,)).tolist()
            x = x.roll((dy, dx), dims=(-2, -1))
        return x, self.label(k)


def per_class_split(
    files: list[str], labels: list[int], train_fraction: float = 0.9, seed: int = 0
) -> tuple[list[int], list[int]]:
    """A fixed, seeded per-class split: ``(train indices, test indices)`` into ``files``.

    For every class ``c`` (in sorted order), its files are sorted by path and
    permuted by ``numpy.random.default_rng([seed, c])``; the first
    ``round(train_fraction * n_c)`` are training files, the rest test files.
    The split depends only on the set of files (not on the order a folder
    walk lists them), and one class's split does not depend on the others.
    """
    _check_fraction(train_fraction)
    by_class: dict[int, list[int]] = {}
    for i in sorted(range(len(files)), key=lambda i: files[i]):
        by_class.setdefault(int(labels[i]), []).append(i)
    train, test = [], []
    for c in sorted(by_class):
        members = by_class[c]
        order = np.random.default_rng([seed, c]).permutation(len(members))
        cut = round(train_fraction * len(members))
        train += [members[j] for j in order[:cut]]
        test += [members[j] for j in order[cut:]]
    return sorted(train), sorted(test)


# ------------------------------------------------------------------------------ tonic datasets
def _has_files(folder: Path, ext: str) -> bool:
    return folder.is_dir() and next(folder.rglob(f"*{ext}"), None) is not None


def _tonic_files(name: str):
    """The file check of ``name``: files of its type under ``root/<tonic class name>/``."""
    spec = TONIC[name]

    @file_check(name)
    def check(root, download: bool = False) -> None:
        folder = require_root(root, name) / spec.cls_name
        if not download and not _has_files(folder, spec.ext):
            how = "Set data.args.download=true to let tonic fetch it, or put the files there"
            raise not_found(name, folder, spec.layout, how)


for _name in TONIC:
    _tonic_files(_name)


def _local_class(name: str):
    """tonic's dataset class for ``name`` with our existence check and download policy.

    tonic's own check wants the downloaded archive and a full count of files;
    here the folder need only hold files of the dataset's type. A missing
    dataset is downloaded through tonic when the instance was made with
    ``download=True``, else reported. The class keeps tonic's name (tonic puts
    the files under ``root/<class name>/``) and is stored in this module as
    ``_Local<name>`` so that instances pickle (loader worker processes).
    """
    spec = TONIC[name]
    qualname = f"_Local{spec.cls_name}"
    if qualname in globals():
        return globals()[qualname]
    base = spec.tonic_class()

    def __init__(self, save_to: str, download: bool, **kwargs):
        self.allow_download = download
        base.__init__(self, save_to, **kwargs)

    def _check_exists(self) -> bool:
        return _has_files(Path(self.location_on_system, self.folder_name), spec.ext)

    def download(self):
        where = Path(self.location_on_system)
        if not self.allow_download:
            raise not_found(
                name,
                where,
                spec.layout,
                f"Set data.args.download=true to let tonic fetch it ({self.url}), or put the "
                f"files there yourself",
            )
        download_or_raise(
            name,
            where,
            lambda: base.download(self),
            f"Fetch {self.url} by hand and extract it there",
        )

    methods = {"__init__": __init__, "_check_exists": _check_exists, "download": download}
    local = type(base.__name__, (base,), methods)
    local.__qualname__, local.__module__ = qualname, __name__
    globals()[qualname] = local
    return local


def _open(name: str, root: Path, download: bool, **kwargs):
    """tonic's dataset ``name`` over the files under ``root/<tonic class name>/``.

    :raises MissingPackageError: tonic (or aedat) is not installed: the message names the extra
    """
    require_packages(name)
    return _local_class(name)(str(root), download, **kwargs)


def _event_spec(
    name: str,
    train,
    test,
    T: int,
    split_by: str,
    size: int | None,
    flip: bool,
    roll: int,
    cache_dir,
):
    """``(dataset, indices)`` pairs for train and test -> a :class:`~sj_ext.app.data.DataSpec`."""
    (train_events, train_idx), (test_events, test_idx) = train, test
    if cache_dir is None:
        cache_dir = Path(train_events.location_on_system) / "frames"
    common = dict(T=T, split_by=split_by, size=size, cache_dir=Path(cache_dir))
    return DataSpec(
        EventFrames(train_events, train_idx, flip=flip, roll=roll, **common),
        EventFrames(test_events, test_idx, **common),
        num_classes=TONIC[name].num_classes,
        in_channels=2,
        layout="sequence",
    )


def _official_split(name: str, root, T, download, split_by, size, flip, roll, cache_dir):
    root = require_root(root, name)
    parts = [_open(name, root, download, train=train) for train in (True, False)]
    return _event_spec(
        name, *[(p, range(len(p))) for p in parts], T, split_by, size, flip, roll, cache_dir
    )


@DATASETS.register("nmnist", check=check_frames)
def nmnist(
    root=None,
    T: int = 10,
    download: bool = False,
    split_by: str = "number",
    size: int | None = None,
    flip: bool = False,
    roll: int = 0,
    cache_dir: str | None = None,
):
    """N-MNIST (tonic ``NMNIST`` under ``root/NMNIST/``): ``[T, 2, 34, 34]``, 10 classes.

    The official train / test split. Arguments: see :class:`EventFrames`;
    ``download=True`` lets tonic fetch the archives.
    """
    return _official_split("nmnist", root, T, download, split_by, size, flip, roll, cache_dir)


@DATASETS.register("dvsgesture", check=check_frames)
def dvsgesture(
    root=None,
    T: int = 20,
    download: bool = False,
    split_by: str = "number",
    size: int | None = None,
    flip: bool = False,
    roll: int = 0,
    cache_dir: str | None = None,
):
    """DVS128 Gesture (tonic ``DVSGesture`` under ``root/DVSGesture/``): ``[T, 2, 128, 128]``.

    11 classes, the official split (users 1-23 train, 24-29 test). Arguments:
    see :class:`EventFrames`; ``download=True`` lets tonic fetch the archives.
    """
    return _official_split("dvsgesture", root, T, download, split_by, size, flip, roll, cache_dir)


@DATASETS.register("cifar10dvs", check=check_frames)
def cifar10dvs(
    root=None,
    T: int = 10,
    download: bool = False,
    split_by: str = "number",
    size: int | None = None,
    flip: bool = False,
    roll: int = 0,
    cache_dir: str | None = None,
    train_fraction: float = 0.9,
    split_seed: int = 0,
):
    """CIFAR10-DVS (tonic ``CIFAR10DVS`` under ``root/CIFAR10DVS/``): ``[T, 2, 128, 128]``.

    10 classes, no official split: a fixed per-class split of
    ``train_fraction`` (9:1, 900 / 100 recordings per class) seeded by
    ``split_seed`` (:func:`per_class_split`). Reading ``.aedat4`` needs the
    ``aedat`` package. Arguments: see :class:`EventFrames`; ``download=True``
    lets tonic fetch the archive.
    """
    root = require_root(root, "cifar10dvs")
    events = _open("cifar10dvs", root, download)
    files = [str(Path(f).relative_to(events.location_on_system)) for f in events.data]
    train_idx, test_idx = per_class_split(files, events.targets, train_fraction, split_seed)
    return _event_spec(
        "cifar10dvs",
        (events, train_idx),
        (events, test_idx),
        T,
        split_by,
        size,
        flip,
        roll,
        cache_dir,
    )
