r"""Paired differences by seed and their Student t interval: the statistics of ``sj-ext compare``.

Runs of the same seed share their initialisation and data order, so arm
:math:`a` is compared with the baseline :math:`b` on the seeds both ran,
:math:`S = S_a \cap S_b`, :math:`n = |S|`, through the paired differences of
the final test accuracy

.. math::

    d_s = \mathrm{acc}_a(s) - \mathrm{acc}_b(s), \qquad
    \bar d = \frac{1}{n} \sum_{s \in S} d_s, \qquad
    s_d = \sqrt{\frac{1}{n-1} \sum_{s \in S} (d_s - \bar d)^2},

and the Student t interval of the mean difference at confidence :math:`c`
(0.95, :data:`CONFIDENCE`)

.. math::

    \bar d \pm t_{(1+c)/2,\; n-1} \, \frac{s_d}{\sqrt n}

(``scipy.stats.t.ppf``; the interval of the paired t-test, ``scipy.stats.ttest_rel``).
Pairing removes the seed-to-seed variation both arms share, so the interval is
narrower than one from the two arms' separate standard deviations. The verdict
is ``better`` when the interval lies above 0, ``worse`` when it lies below 0, and
``inside the noise`` when it contains 0 or there are fewer than two pairs (no
interval). It assumes the :math:`d_s` roughly normal and independent; with 3--5
seeds :math:`t_{0.975, n-1}` is large (4.30 for :math:`n = 3`), so only clear
differences leave the noise.

An accuracy on :math:`N` test images is a count over :math:`N`, so every :math:`d_s`
lies on a grid of step :math:`h = 1/N`, and a few pairs can agree exactly (two seeds
both 2 images apart, say): their :math:`s_d` is 0 and the interval would shrink to a
point. Given :math:`h` (``sj-ext compare`` takes :math:`N` from the runs'
``test_samples``, the fewest of any run), the interval therefore uses
:math:`\max(s_d, h/\sqrt{12})`, the standard deviation that rounding to that grid
alone adds; ``sd`` stays the sample :math:`s_d`. It changes nothing once the pairs
spread by more than an image or so.

Torch-free: the standard library and scipy.
"""

import math
import statistics

from scipy import stats

__all__ = ["CONFIDENCE", "VERDICTS", "paired_difference", "verdict"]

CONFIDENCE = 0.95  #: the confidence of the intervals ``sj-ext compare`` gives
VERDICTS = ("better", "worse", "inside the noise")  #: of an arm against its baseline


def paired_difference(
    a: list[float], b: list[float], confidence: float = CONFIDENCE, resolution: float = 0.0
) -> dict:
    r"""Mean of the paired differences :math:`d_i = a_i - b_i` and its Student t interval.

    :math:`\bar d = \frac1n \sum_i d_i`, the sample standard deviation
    :math:`s_d = \sqrt{\frac{1}{n-1} \sum_i (d_i - \bar d)^2}` and the interval
    :math:`\bar d \pm t_{(1+c)/2,\, n-1}\, \max(s_d, h/\sqrt{12}) / \sqrt n` at
    confidence :math:`c`, with :math:`h` the ``resolution`` of the values (the grid step
    of an accuracy over :math:`N` test images, :math:`1/N`; 0: the confidence interval
    of the paired t-test).

    :returns: ``{"n", "mean", "sd", "low", "high"}`` (floats); ``sd``, ``low`` and
        ``high`` are ``None`` for ``n < 2``, ``mean`` too for ``n = 0``
    :raises ValueError: ``a`` and ``b`` differ in length, ``confidence`` is not in (0, 1)
        or ``resolution`` is negative
    """
    if len(a) != len(b):
        raise ValueError(f"paired_difference: {len(a)} values against {len(b)}; pairs needed")
    if not 0 < confidence < 1:
        raise ValueError(f"paired_difference: confidence {confidence!r} is not in (0, 1)")
    if not resolution >= 0:
        raise ValueError(f"paired_difference: resolution {resolution!r} is negative")
    d = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    n = len(d)
    mean = statistics.fmean(d) if d else None
    if n < 2:
        return {"n": n, "mean": mean, "sd": None, "low": None, "high": None}
    sd = statistics.stdev(d)
    spread = max(sd, resolution / math.sqrt(12))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * spread / math.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "low": mean - half, "high": mean + half}


def verdict(diff: dict) -> str:
    """``better`` / ``worse`` when the interval of ``diff`` lies above / below 0, else
    ``inside the noise`` (also for fewer than two pairs: no interval)."""
    if diff["low"] is None:
        return "inside the noise"
    if diff["low"] > 0:
        return "better"
    if diff["high"] < 0:
        return "worse"
    return "inside the noise"
