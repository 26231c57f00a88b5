"""Accuracy, NLL and ECE on tiny arrays, each value worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest

from activelabel.pipeline.metrics import (
    Evaluation,
    accuracy,
    evaluate,
    expected_calibration_error,
    negative_log_likelihood,
)


def test_perfectly_confident_and_correct() -> None:
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    targets = np.array([0, 1, 2])
    # every argmax hits -> 3/3
    assert accuracy(probs, targets) == 1.0
    # -mean(log 1) = 0
    assert negative_log_likelihood(probs, targets) == pytest.approx(0.0, abs=1e-12)
    # one bin (0.9333, 1]: accuracy 1, confidence 1 -> gap 0
    assert expected_calibration_error(probs, targets) == pytest.approx(0.0, abs=1e-12)


def test_accuracy_and_nll_by_hand() -> None:
    probs = np.array([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8], [0.9, 0.1]])
    targets = np.array([0, 0, 1, 1])
    # argmax = [0, 1, 1, 0] vs [0, 0, 1, 1] -> hits T, F, T, F -> 2/4
    assert accuracy(probs, targets) == 0.5
    # picked p = [0.7, 0.4, 0.8, 0.1]; NLL = -(ln .7 + ln .4 + ln .8 + ln .1) / 4
    #   = (0.35667 + 0.91629 + 0.22314 + 2.30259) / 4 = 0.94967
    expected = -(math.log(0.7) + math.log(0.4) + math.log(0.8) + math.log(0.1)) / 4
    assert negative_log_likelihood(probs, targets) == pytest.approx(expected)
    assert expected == pytest.approx(0.94967, abs=1e-5)


def test_nll_clips_zero_probability() -> None:
    # p(target) = 0 -> clipped to 1e-12 -> -ln(1e-12) = 27.631; finite, not inf
    probs = np.array([[1.0, 0.0]])
    assert negative_log_likelihood(probs, np.array([1])) == pytest.approx(-math.log(1e-12))


def test_ece_two_bins_by_hand() -> None:
    probs = np.array(
        [
            [0.9, 0.05, 0.05],  # conf 0.9, pred 0, target 0 -> correct
            [0.8, 0.1, 0.1],  # conf 0.8, pred 0, target 1 -> wrong
            [0.4, 0.35, 0.25],  # conf 0.4, pred 0, target 0 -> correct
            [0.45, 0.3, 0.25],  # conf 0.45, pred 0, target 2 -> wrong
        ]
    )
    targets = np.array([0, 1, 0, 2])
    # bins=2: edges [0, 0.5, 1]
    # bin (0.5, 1]: {0.9 ok, 0.8 wrong} -> acc 0.5, conf 0.85, gap 0.35, weight 2/4 -> 0.175
    # bin [0, 0.5]: {0.4 ok, 0.45 wrong} -> acc 0.5, conf 0.425, gap 0.075, weight 2/4 -> 0.0375
    # ECE = 0.175 + 0.0375 = 0.2125
    assert expected_calibration_error(probs, targets, bins=2) == pytest.approx(0.2125)
    # One bin lumps everything: acc 0.5, conf (0.9+0.8+0.4+0.45)/4 = 0.6375 -> 0.1375
    assert expected_calibration_error(probs, targets, bins=1) == pytest.approx(0.1375)


def test_ece_default_bins_by_hand() -> None:
    probs = np.array([[0.7, 0.3], [0.05, 0.95]])
    targets = np.array([0, 0])
    # 15 bins of width 1/15: 0.7 falls in (0.6667, 0.7333], 0.95 in (0.9333, 1]
    # bin with 0.7: correct -> |1 - 0.7| = 0.3, weight 1/2 -> 0.15
    # bin with 0.95: wrong (pred 1, target 0) -> |0 - 0.95| = 0.95, weight 1/2 -> 0.475
    # ECE = 0.625
    assert expected_calibration_error(probs, targets) == pytest.approx(0.625)


def test_ece_bin_edges_are_right_closed() -> None:
    probs = np.array([[0.5, 0.5], [0.0, 1.0]])
    targets = np.array([0, 0])
    # conf 0.5 (argmax 0, correct) belongs to (0, 0.5]; conf 1.0 (pred 1, wrong) to (0.5, 1]
    # -> 1/2 * |1 - 0.5| + 1/2 * |0 - 1| = 0.25 + 0.5 = 0.75
    # (had 0.5 landed in the upper bin: acc 0.5, conf 0.75 -> 0.25)
    assert expected_calibration_error(probs, targets, bins=2) == pytest.approx(0.75)


def test_evaluate_bundles_the_three_metrics() -> None:
    probs = np.array([[0.7, 0.3], [0.4, 0.6]])
    targets = np.array([0, 0])
    result = evaluate(probs, targets)
    assert isinstance(result, Evaluation)
    # hits T, F -> 0.5
    assert result.accuracy == 0.5
    # -(ln 0.7 + ln 0.4) / 2
    assert result.nll == pytest.approx(-(math.log(0.7) + math.log(0.4)) / 2)
    # 15 bins: 0.7 in (0.6667, 0.7333] correct -> 0.3; 0.6 in (0.5333, 0.6] wrong -> 0.6
    # -> (0.3 + 0.6) / 2 = 0.45
    assert result.ece == pytest.approx(0.45)


def test_empty_inputs_give_nan() -> None:
    probs = np.zeros((0, 3))
    targets = np.zeros(0, dtype=np.int64)
    assert math.isnan(accuracy(probs, targets))
    assert math.isnan(negative_log_likelihood(probs, targets))
    assert math.isnan(expected_calibration_error(probs, targets))
    result = evaluate(probs, targets)
    assert math.isnan(result.accuracy) and math.isnan(result.nll) and math.isnan(result.ece)


# --- Brier score, reliability bins, AUROC ----------------------------------------------------

from activelabel.pipeline.metrics import (  # noqa: E402
    ReliabilityBin,
    auroc,
    brier_score,
    ece_from_bins,
    reliability_bins,
)


def test_brier_by_hand() -> None:
    probs = np.array([[0.7, 0.3], [0.4, 0.6]])
    targets = np.array([0, 0])
    # sample 0: (0.7-1)^2 + 0.3^2 = 0.09 + 0.09 = 0.18; sample 1: (0.4-1)^2 + 0.6^2 = 0.72
    # mean = 0.45
    assert brier_score(probs, targets) == pytest.approx(0.45)
    assert brier_score(np.eye(3), np.arange(3)) == 0.0
    assert math.isnan(brier_score(np.zeros((0, 2)), np.zeros(0, dtype=np.int64)))


def test_reliability_bins_by_hand() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.4, 0.35, 0.25], [0.45, 0.3, 0.25]])
    targets = np.array([0, 1, 0, 2])
    bins = reliability_bins(probs, targets, bins=2)
    assert bins == [
        ReliabilityBin(0.0, 0.5, pytest.approx(0.425), 0.5, 2),
        ReliabilityBin(0.5, 1.0, pytest.approx(0.85), 0.5, 2),
    ]
    assert ece_from_bins(bins) == pytest.approx(0.2125)


def test_reliability_bins_cover_every_sample_and_keep_empty_bins() -> None:
    rng = np.random.default_rng(0)
    w = rng.random((500, 10)) ** 4
    probs = w / w.sum(axis=1, keepdims=True)
    targets = rng.integers(0, 10, 500)
    bins = reliability_bins(probs, targets)
    assert len(bins) == 15
    assert sum(b.count for b in bins) == 500
    assert bins[0].count == 0 and math.isnan(bins[0].confidence)  # max prob >= 0.1 > 1/15
    assert bins[0].lower == 0.0 and bins[-1].upper == 1.0
    for b in bins:
        if b.count:
            assert b.lower <= b.confidence <= b.upper
    assert ece_from_bins(bins) == pytest.approx(expected_calibration_error(probs, targets))


def test_auroc_by_hand() -> None:
    # positives {2, 4} vs negatives {1, 3}: pairs (2>1), (2<3), (4>1), (4>3) -> 3/4
    assert auroc(np.array([1.0, 3.0]), np.array([2.0, 4.0])) == 0.75
    assert auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert auroc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0
    # a tie counts one half: positive 1 vs negatives {1, 0} -> (0.5 + 1) / 2
    assert auroc(np.array([1.0, 0.0]), np.array([1.0])) == 0.75
    assert math.isnan(auroc(np.array([]), np.array([1.0])))
