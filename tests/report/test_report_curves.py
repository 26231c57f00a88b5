"""Labels-to-target, area under the learning curve and the paired test on hand-made curves."""

from __future__ import annotations

import math

import pytest

from activelabel.report.curves import (
    aulc, common_points, labels_to_target, mean_curve, paired_t_test,
)


def test_labels_to_target_is_the_first_point_at_or_above_the_target():
    labels, acc = [20, 30, 40, 50], [0.50, 0.80, 0.79, 0.90]
    assert labels_to_target(labels, acc, 0.80) == 30
    assert labels_to_target(labels, acc, 0.85) == 50
    assert labels_to_target(labels, acc, 0.50) == 20
    assert labels_to_target(labels, acc, 0.95) is None
    assert labels_to_target([20, 30], [None, 0.9], 0.9) == 30


def test_aulc_is_the_mean_height_of_the_trapezoids():
    # (0.5+0.7)/2*10 + (0.7+0.9)/2*20 = 6 + 16 = 22 over a span of 30
    assert aulc([10, 20, 40], [0.5, 0.7, 0.9]) == pytest.approx(22 / 30)
    assert aulc([10, 20], [0.6, 0.6]) == pytest.approx(0.6)
    assert aulc([5], [0.4]) == 0.4
    with pytest.raises(ValueError, match="increase"):
        aulc([10, 10], [0.1, 0.2])
    with pytest.raises(ValueError, match="equal"):
        aulc([10, 20], [0.1])


def test_paired_t_test_on_known_differences():
    # differences 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t = 0.2 / (0.1 / sqrt 3) = 2*sqrt(3)
    result = paired_t_test([0.6, 0.7, 0.8], [0.5, 0.5, 0.5])
    assert result.n == 3 and result.df == 2
    assert result.mean_difference == pytest.approx(0.2)
    assert result.std_difference == pytest.approx(0.1)
    assert result.t == pytest.approx(2 * math.sqrt(3))
    # two-sided p of t = 3.4641 with 2 degrees of freedom: 1 - t/sqrt(t^2 + 2) = 0.074180...
    t = 2 * math.sqrt(3)
    assert result.p_value == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-9)
    assert result.p_value == pytest.approx(0.0741799, abs=1e-6)


def test_paired_t_test_without_spread_or_pairs_gives_no_p_value():
    assert paired_t_test([0.6, 0.7], [0.5, 0.6]).p_value is None  # both differences 0.1
    single = paired_t_test([0.6], [0.5])
    assert single.p_value is None and single.mean_difference == pytest.approx(0.1)
    with pytest.raises(ValueError):
        paired_t_test([0.1, 0.2], [0.1])


def test_mean_curve_and_common_points():
    labels, mean, std, count = mean_curve([([20, 30], [0.5, 0.7]), ([20, 30, 40], [0.7, 0.9, 0.95])])
    assert labels == [20, 30, 40]
    assert mean == pytest.approx([0.6, 0.8, 0.95])
    assert std == pytest.approx([math.sqrt(0.02), math.sqrt(0.02), 0.0])
    assert count == [2, 2, 1]
    a, b = common_points(([20, 30, 40], [0.1, 0.2, 0.3]), ([20, 40], [0.5, 0.6]))
    assert a == ([20, 40], [0.1, 0.3]) and b == ([20, 40], [0.5, 0.6])
