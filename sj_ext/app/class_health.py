r"""Per-class health of a classifier in training: is any class dying?

A curriculum loss re-weights samples; if one class's samples are all "hard"
they can lose most of their weight and the class is never learned while the
mean accuracy looks fine (CL-SNN on firing-rate outputs did exactly that to
MNIST's digit 8: see ``docs/methods.md``, The firing-rate trap (MNIST)). These
checks turn that into a warning in the training log and in ``sj-ext report``. Torch-free: the report
reads run folders without loading torch.

Two signals, per class :math:`c` of :math:`C`:

* **accuracy collapse**: :math:`a_c < \tfrac12\,\mathrm{median}_k\, a_k` while
  the median is above chance (:math:`2/C`), i.e. the rest of the net has
  learned and this class has not;
* **weight collapse**: the class's share of the loss weight over its share of
  the samples, :math:`r_c = \frac{\sum_{i \in c} \sigma_i / \sum_i \sigma_i}
  {n_c / n}`, is below :data:`WEIGHT_RATIO_MIN` (= 1/3): its samples count
  less than a third of what plain averaging would give them.
"""

import math
from statistics import median

__all__ = [
    "ACC_FRACTION",
    "WEIGHT_RATIO_MIN",
    "accuracy_warnings",
    "weight_warnings",
    "class_rates",
    "summed_class_rates",
]

ACC_FRACTION = 0.5
WEIGHT_RATIO_MIN = 1 / 3


def _known(values) -> list[tuple[int, float]]:
    return [
        (c, float(v))
        for c, v in enumerate(values or [])
        if v is not None and math.isfinite(float(v))
    ]


def accuracy_warnings(per_class_acc, where: str = "", what: str = "test accuracy") -> list[str]:
    """Warnings for classes whose accuracy collapsed (see the module docstring).

    :param per_class_acc: accuracy of each class (``None`` for a class without samples)
    :param where: prefix naming the epoch or run, e.g. ``"epoch 3: "``
    :param what: which accuracy it is, for the message
    """
    known = _known(per_class_acc)
    if len(known) < 2:
        return []
    mid = median(v for _, v in known)
    if mid <= 2 / len(per_class_acc):
        return []
    return [
        f"{where}class {c} has {what} {v:.3f}, under half the median class "
        f"accuracy {mid:.3f}: the class is not being learned"
        for c, v in known
        if v < ACC_FRACTION * mid
    ]


def weight_warnings(weight_ratio, where: str = "") -> list[str]:
    """Warnings for classes whose share of the loss weight collapsed.

    :param weight_ratio: per class, its share of the weight over its share of
        the samples (``None`` for a class that was not sampled)
    """
    return [
        f"{where}class {c} gets {v:.2f}x its fair share of the loss weight (under "
        f"{WEIGHT_RATIO_MIN:.2f}x): the curriculum is starving it"
        for c, v in _known(weight_ratio)
        if v < WEIGHT_RATIO_MIN
    ]


def _round(v: float) -> float:
    return float(f"{v:.6g}")


def class_rates(count, weight, correct) -> dict:
    r"""Per-class lists from per-class sample counts, summed weights and correct counts.

    :return: ``count``, ``weight`` (:math:`\sum_{i \in c} \sigma_i`), ``correct``, and per
        class ``weight_share``, ``weight_ratio`` (:math:`r_c`), ``mean_sigma`` and ``acc``
        (``None`` for a class without samples)
    """
    n, total = sum(count), sum(weight)

    def per_class(f):
        return [
            _round(f(k, w, r)) if k > 0 else None
            for k, w, r in zip(count, weight, correct, strict=True)
        ]

    return {
        "count": [int(k) for k in count],
        "weight": [_round(w) for w in weight],
        "correct": [int(r) for r in correct],
        "weight_share": per_class(lambda k, w, r: w / total if total > 0 else 0.0),
        "weight_ratio": per_class(lambda k, w, r: (w / total) / (k / n) if total > 0 else 0.0),
        "mean_sigma": per_class(lambda k, w, r: w / k),
        "acc": per_class(lambda k, w, r: r / k),
    }


def _well_formed(entry) -> bool:
    """A ``classes`` entry with equally long numeric ``count``, ``weight`` and ``correct``."""
    if not isinstance(entry, dict):
        return False
    columns = [entry.get(key) for key in ("count", "weight", "correct")]
    return (
        all(isinstance(c, list) for c in columns)
        and len({len(c) for c in columns}) == 1
        and all(isinstance(v, int | float) for c in columns for v in c)
    )


def summed_class_rates(records) -> dict | None:
    """:func:`class_rates` of the per-class sums over several records' ``classes`` entries.

    Entries that are not well formed (an older or damaged record) are left out; ``None``
    when none is left, or when they disagree on the number of classes.
    """
    entries = [r["classes"] for r in records if _well_formed(r.get("classes"))]
    if not entries or len({len(e["count"]) for e in entries}) > 1:
        return None
    sums = [
        [sum(column) for column in zip(*(e[key] for e in entries), strict=True)]
        for key in ("count", "weight", "correct")
    ]
    return class_rates(*sums)
