"""scikit-learn's 8x8 handwritten digits: real data shipped inside the package."""

import torch
from torch.utils.data import TensorDataset

from ..registry import DATASETS
from .spec import DataSpec


def check_args(root=None, T: int = 1, test_fraction: float = 0.2, split_seed: int = 0):
    """``ValueError`` for a ``test_fraction`` outside (0, 1) or a negative ``split_seed``."""
    number = isinstance(test_fraction, int | float) and not isinstance(test_fraction, bool)
    if not number or not 0 < test_fraction < 1:
        raise ValueError(f"data.args.test_fraction must lie in (0, 1), got {test_fraction!r}")
    if isinstance(split_seed, bool) or not isinstance(split_seed, int) or split_seed < 0:
        raise ValueError(f"data.args.split_seed must be an integer >= 0, got {split_seed!r}")


@DATASETS.register("digits", check=check_args)
def digits(root=None, T: int = 1, test_fraction: float = 0.2, split_seed: int = 0):
    """1797 images ``[1, 8, 8]`` in [0, 1], 10 classes; a stratified, seeded split.

    ``root`` and ``T`` are unused: the data ship with scikit-learn and are static;
    ``test_fraction`` in (0, 1) (:func:`check_args`).
    """
    check_args(root, T, test_fraction, split_seed)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=split_seed, stratify=y
    )
    return DataSpec(
        TensorDataset(x_train, y_train),
        TensorDataset(x_test, y_test),
        num_classes=10,
        in_channels=1,
    )
