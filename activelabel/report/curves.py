"""The numbers of a strategy comparison, over learning curves: pure math, no storage, no plots.

A learning curve is two equal-length sequences: labels (the labeled-set size a model was
trained on, increasing) and a metric measured on the test split (accuracy, in [0, 1]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def labels_to_target(labels: Sequence[int], accuracy: Sequence[float], target: float) -> int | None:
    """The fewest labels at which ``accuracy >= target`` (the first such point); None: never.

    This is the figure of Gal, Islam & Ghahramani 2017, Table 1 ("acquired images to reach
    10 % / 5 % test error"), read off the measured points without interpolation.
    """
    for n, value in zip(labels, accuracy):
        if value is not None and value >= target:
            return int(n)
    return None


def aulc(labels: Sequence[float], values: Sequence[float]) -> float:
    """Normalised area under the learning curve: the trapezoid area divided by the label span.

    The result is the curve's mean height over the labels it covers (in the metric's unit: an
    accuracy for accuracy curves). Runs compare only over the same span (a longer curve adds
    its later, higher points): cut them to :func:`shared_span` first. A single point gives its value. Raises ``ValueError`` for no points, unequal lengths or labels that do not
    increase.
    """
    x = np.asarray(labels, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"a learning curve needs equal, non-zero numbers of labels and values, got {len(x)} and {len(y)}")
    if len(x) == 1:
        return float(y[0])
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"labels must increase along a learning curve, got {x.tolist()}")
    area = float(np.sum((y[1:] + y[:-1]) / 2.0 * np.diff(x)))
    return area / float(x[-1] - x[0])


@dataclass(frozen=True)
class PairedTest:
    """A paired t-test of per-seed differences (strategy minus baseline).

    ``p_value`` is two-sided; None when it cannot be computed (fewer than two pairs, or every
    difference the same, so the spread is zero).
    """

    n: int
    mean_difference: float
    std_difference: float
    t: float | None
    p_value: float | None

    @property
    def df(self) -> int:
        return self.n - 1


def paired_t_test(values: Sequence[float], baseline: Sequence[float]) -> PairedTest:
    """Student's paired t-test on ``values - baseline`` (one pair per seed).

    Why a t-test: with 3–5 seeds the Wilcoxon signed-rank test cannot reach p < 0.05 at all
    (its smallest two-sided p-value with n pairs is 2 / 2^n: 0.25 for n = 3, 0.0625 for n = 5),
    so it could never show a difference. The paired t-test can, under the assumption that the
    per-seed differences are roughly normal. Raises ``ValueError`` for unequal lengths.
    """
    a = np.asarray(values, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if len(a) != len(b):
        raise ValueError(f"paired values need one baseline per value, got {len(a)} and {len(b)}")
    d = a - b
    n = len(d)
    if n == 0:
        return PairedTest(0, math.nan, math.nan, None, None)
    mean = float(d.mean())
    if n < 2:
        return PairedTest(n, mean, math.nan, None, None)
    std = float(d.std(ddof=1))
    if std == 0.0:
        return PairedTest(n, mean, 0.0, None, None)
    from scipy import stats

    t = mean / (std / math.sqrt(n))
    p = float(2.0 * stats.t.sf(abs(t), df=n - 1))
    return PairedTest(n, mean, std, float(t), p)


def mean_curve(curves: Sequence[tuple[Sequence[int], Sequence[float]]]) -> tuple[list[int], list[float], list[float], list[int]]:
    """(labels, mean, std, count) over curves, at every label count any curve measured.

    ``std`` is the sample standard deviation (0 where one curve has the point). Missing values
    (None) are left out of that point.
    """
    by_label: dict[int, list[float]] = {}
    for labels, values in curves:
        for n, v in zip(labels, values):
            if v is not None:
                by_label.setdefault(int(n), []).append(float(v))
    xs = sorted(by_label)
    means = [float(np.mean(by_label[x])) for x in xs]
    stds = [float(np.std(by_label[x], ddof=1)) if len(by_label[x]) > 1 else 0.0 for x in xs]
    return xs, means, stds, [len(by_label[x]) for x in xs]


def every_seed_points(curves: Sequence[tuple[Sequence[int], Sequence[float]]], count: Sequence[int]) -> list[int]:
    """The indices of :func:`mean_curve`'s points (``count``: its fourth result) that every curve
    with a point has measured: where a mean over seeds means the same seeds from one point to the
    next. Past a strategy's shortest seed (an experiment still running, or interrupted) it does not."""
    seeds = sum(1 for c in curves if any(v is not None for v in c[1]))
    return [i for i, n in enumerate(count) if n == seeds]


def shared_span(curves: Sequence[tuple[Sequence[int], Sequence[float]]]) -> tuple[int, int] | None:
    """``(first, last)``: the label counts between which every curve with a point has run (the
    latest first point, the earliest last point); None when there is no curve or no overlap.

    An experiment read while it runs, or after it was interrupted, holds curves of unequal
    length; an area or a mean compares strategies fairly only over this span.
    """
    ends = [(min(int(n) for n, v in zip(*c) if v is not None), max(int(n) for n, v in zip(*c) if v is not None))
            for c in curves if any(v is not None for v in c[1])]
    if not ends:
        return None
    first, last = max(e[0] for e in ends), min(e[1] for e in ends)
    return (first, last) if first <= last else None


def within(curve: tuple[Sequence[int], Sequence[float]], span: tuple[int, int]) -> tuple[list[int], list[float]]:
    """The curve's measured points with labels in ``span`` (both ends included)."""
    points = [(int(n), float(v)) for n, v in zip(*curve) if v is not None and span[0] <= int(n) <= span[1]]
    return [p[0] for p in points], [p[1] for p in points]


def common_points(a: tuple[Sequence[int], Sequence[float]], b: tuple[Sequence[int], Sequence[float]]):
    """Both curves restricted to the label counts both measured (for a fair paired AULC)."""
    shared = {int(n) for n, v in zip(*a) if v is not None} & {int(n) for n, v in zip(*b) if v is not None}

    def keep(curve):
        points = [(int(n), float(v)) for n, v in zip(*curve) if int(n) in shared and v is not None]
        return [p[0] for p in points], [p[1] for p in points]

    return keep(a), keep(b)
