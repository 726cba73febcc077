"""scikit-learn's 8x8 handwritten digits: real data shipped inside the package."""

import torch
from torch.utils.data import TensorDataset

from ..registry import DATASETS


@DATASETS.register("digits")
def digits(root=None, T: int = 1, test_fraction: float = 0.2, split_seed: int = 0):
    """1797 images ``[1, 8, 8]`` in [0, 1], 10 classes; a stratified, seeded split.

    ``root`` and ``T`` are unused: the data ship with scikit-learn and are static.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from . import DataSpec

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
