r"""Fixed, seeded, class-stratified subsets of a split (``data.train_samples`` / ``test_samples``)
and the validation split carved from the training split (``data.val_samples``).

The subset depends only on the dataset (its size and labels), the size asked
for and :data:`SUBSET_SEED`, never on the run's seed: every run of a sweep
sees the same images. Stratified where the labels can be read without loading
a sample (``dataset.targets``, as torchvision's datasets and ``ImageFolder``
have, or the labels tensor of a ``TensorDataset``): each class :math:`c` with
:math:`N_c` samples, shuffled, gives its :math:`r`-th sample the key
:math:`(r + \frac12) / N_c`, and the ``n`` smallest keys are kept, so a class
gets :math:`n N_c / N` samples up to rounding. Elsewhere the ``n`` samples are
a seeded uniform draw. The kept indices are in the dataset's order.
:func:`split_off` keeps the same ``n`` samples as the held-out part and the
rest as the other.
"""

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

__all__ = ["SUBSET_SEED", "dataset_labels", "fixed_subset", "split_off"]

SUBSET_SEED = 0


def dataset_labels(dataset: Dataset) -> torch.Tensor | None:
    """The class labels ``[len(dataset)]`` when known without loading samples, else ``None``."""
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        labels = dataset.tensors[1]
    elif isinstance(dataset, Subset):
        inner = dataset_labels(dataset.dataset)
        return None if inner is None else inner[torch.as_tensor(dataset.indices)]
    else:
        labels = getattr(dataset, "targets", None)
    if labels is None:
        return None
    labels = torch.as_tensor(labels)
    return labels if labels.shape == (len(dataset),) and not labels.is_floating_point() else None


def _kept(dataset: Dataset, n: int, what: str) -> list[int]:
    """The sorted indices of the ``n`` samples :func:`fixed_subset` keeps."""
    size = len(dataset)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{what}: must be a positive int or null (all), got {n!r}")
    if n > size:
        raise ValueError(f"{what}: {n} is more than the {size} samples of that split")
    g = torch.Generator().manual_seed(SUBSET_SEED)
    order = torch.randperm(size, generator=g)
    labels = dataset_labels(dataset)
    if labels is None:
        keep = order[:n]
    else:
        shuffled = labels[order]
        rank = torch.empty(size, dtype=torch.float64)
        for c in shuffled.unique():
            where = (shuffled == c).nonzero().flatten()
            rank[where] = (torch.arange(len(where), dtype=torch.float64) + 0.5) / len(where)
        keep = order[torch.sort(rank, stable=True).indices[:n]]
    return sorted(keep.tolist())


def fixed_subset(dataset: Dataset, n: int | None, what: str) -> Dataset:
    """``n`` samples of ``dataset`` (stratified by class where possible); ``None``: all.

    :param what: the recipe key, for the error (e.g. ``'data.train_samples'``)
    :raises ValueError: ``n`` is not a positive int or exceeds the dataset's size
    """
    return dataset if n is None else Subset(dataset, _kept(dataset, n, what))


def split_off(dataset: Dataset, n: int, what: str) -> tuple[Dataset, Dataset]:
    """``(rest, held_out)``: ``held_out`` the ``n`` samples :func:`fixed_subset` keeps,
    ``rest`` every other sample, both in the dataset's order (disjoint, together all).

    :raises ValueError: ``n`` is not a positive int, or leaves no sample in ``rest``
    """
    held = _kept(dataset, n, what)
    if len(held) == len(dataset):
        raise ValueError(f"{what}: {n} would leave none of the {len(dataset)} samples to train on")
    rest = sorted(set(range(len(dataset))) - set(held))
    return Subset(dataset, rest), Subset(dataset, held)
