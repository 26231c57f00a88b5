"""Hand-computed scores on tiny tensors, and the fixed-array invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest

from activelabel.acquisition import (
    bald,
    confidence,
    deterministic,
    least_confidence,
    margin,
    mean_probabilities,
    mean_std,
    predicted_class,
    predictive_entropy,
    variation_ratios,
)

LN2 = math.log(2.0)
DETERMINISTIC_SCORES = [predictive_entropy, bald, mean_std, variation_ratios, margin, least_confidence]


def test_two_disagreeing_one_hot_passes() -> None:
    # T=2, N=1, C=2, passes [1, 0] and [0, 1]
    p = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    # mean = [0.5, 0.5] -> H = -2 * 0.5 ln 0.5 = ln 2
    assert predictive_entropy(p) == pytest.approx([LN2])
    # each pass is one-hot -> H[p_t] = 0 -> BALD = ln 2 - 0
    assert bald(p) == pytest.approx([LN2])
    # per class values {1, 0}: E[p^2] = 0.5, E[p]^2 = 0.25 -> std 0.5; mean over 2 classes 0.5
    assert mean_std(p) == pytest.approx([0.5])
    # votes 0 and 1 -> modal count 1 of 2 -> 1 - 1/2
    assert variation_ratios(p) == pytest.approx([0.5])
    # sorted mean [0.5, 0.5] -> 1 - (0.5 - 0.5) = 1
    assert margin(p) == pytest.approx([1.0])
    # 1 - max(0.5, 0.5)
    assert least_confidence(p) == pytest.approx([0.5])


def test_three_class_case() -> None:
    # T=2, N=1, C=3, passes [.5, .5, 0] and [.5, 0, .5]
    p = np.array([[[0.5, 0.5, 0.0]], [[0.5, 0.0, 0.5]]])
    # mean = [.5, .25, .25]; H = .5 ln2 + 2 * .25 ln4 = .5 ln2 + ln2 = 1.5 ln2
    assert predictive_entropy(p) == pytest.approx([1.5 * LN2])
    # each pass has H = ln2 -> BALD = 1.5 ln2 - ln2 = .5 ln2
    assert bald(p) == pytest.approx([0.5 * LN2])
    # class stds: {.5,.5} -> 0; {.5,0} -> .25; {0,.5} -> .25 ; mean = .5 / 3
    assert mean_std(p) == pytest.approx([1.0 / 6.0])
    # argmax ties resolve to the lowest index: both passes vote class 0 -> 1 - 2/2 = 0
    assert variation_ratios(p) == pytest.approx([0.0])
    # sorted mean [.25, .25, .5] -> 1 - (.5 - .25) = .75
    assert margin(p) == pytest.approx([0.75])
    # 1 - .5
    assert least_confidence(p) == pytest.approx([0.5])
    np.testing.assert_allclose(mean_probabilities(p), [[0.5, 0.25, 0.25]])
    np.testing.assert_allclose(confidence(p), [0.5])
    np.testing.assert_array_equal(predicted_class(p), [0])


def test_variation_ratios_three_passes_and_several_samples() -> None:
    # sample 0 votes: 0, 1, 1 -> modal count 2 of 3 -> 1/3
    # sample 1 votes: 2, 2, 2 -> 0
    # sample 2 votes: 0, 1, 2 -> modal count 1 -> 2/3
    p = np.array(
        [
            [[0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.7, 0.2, 0.1]],
            [[0.2, 0.7, 0.1], [0.0, 0.2, 0.8], [0.1, 0.8, 0.1]],
            [[0.3, 0.6, 0.1], [0.3, 0.3, 0.4], [0.1, 0.2, 0.7]],
        ]
    )
    np.testing.assert_allclose(variation_ratios(p), [1 / 3, 0.0, 2 / 3])


def test_margin_and_least_confidence_on_skewed_mean() -> None:
    # T=1, N=2, C=3: [.7, .2, .1] -> margin 1 - (.7 - .2) = .5, LC 1 - .7 = .3
    #                [.4, .35, .25] -> margin 1 - .05 = .95, LC .6
    p = deterministic([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
    np.testing.assert_allclose(margin(p), [0.5, 0.95])
    np.testing.assert_allclose(least_confidence(p), [0.3, 0.6])
    np.testing.assert_array_equal(predicted_class(p), [0, 0])


@pytest.mark.parametrize("c", [2, 3, 10])
def test_uniform_predictions(c: int) -> None:
    p = np.full((4, 3, c), 1.0 / c)
    np.testing.assert_allclose(predictive_entropy(p), math.log(c))
    np.testing.assert_allclose(least_confidence(p), 1.0 - 1.0 / c)
    np.testing.assert_allclose(margin(p), 1.0)
    # identical passes -> no disagreement
    np.testing.assert_allclose(bald(p), 0.0, atol=1e-12)
    np.testing.assert_array_equal(mean_std(p), 0.0)
    np.testing.assert_array_equal(variation_ratios(p), 0.0)


def test_identical_one_hot_passes_score_zero_everywhere() -> None:
    one_hot = np.eye(3)[[0, 2, 1, 1]]  # N=4, C=3
    p = np.stack([one_hot] * 5)  # T=5
    for fn in DETERMINISTIC_SCORES:
        if fn is margin:
            # a certain prediction has the full gap p1 - p2 = 1 -> margin score 0
            np.testing.assert_array_equal(fn(p), 0.0)
        else:
            np.testing.assert_array_equal(fn(p), 0.0, err_msg=fn.__name__)
        assert np.isfinite(fn(p)).all()


def test_identical_passes_have_no_epistemic_uncertainty() -> None:
    rows = np.array([[0.2, 0.3, 0.5], [0.9, 0.1, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    p = np.stack([rows] * 7)
    np.testing.assert_allclose(bald(p), 0.0, atol=1e-12)
    np.testing.assert_array_equal(mean_std(p), 0.0)
    np.testing.assert_array_equal(variation_ratios(p), 0.0)
    # ... while total uncertainty is that of a single pass
    np.testing.assert_allclose(predictive_entropy(p), predictive_entropy(p[:1]))


def test_single_pass_gives_zero_for_sample_based_scores() -> None:
    p = deterministic([[0.5, 0.5], [0.2, 0.8], [0.99, 0.01]])
    np.testing.assert_array_equal(bald(p), 0.0)
    np.testing.assert_array_equal(mean_std(p), 0.0)
    np.testing.assert_array_equal(variation_ratios(p), 0.0)
    assert predictive_entropy(p)[0] == pytest.approx(LN2)


def test_exact_zeros_give_finite_scores() -> None:
    p = np.array([[[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]], [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])
    with np.errstate(all="raise"):  # no hidden log(0) / 0*inf warnings either
        for fn in DETERMINISTIC_SCORES:
            out = fn(p)
            assert np.isfinite(out).all(), fn.__name__
    # sample 0: mean [.5, 0, .5] -> H = ln2; passes one-hot -> BALD = ln2
    assert bald(p)[0] == pytest.approx(LN2)


def test_float32_softmax_is_accepted() -> None:
    logits = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
    p32 = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert p32.dtype == np.float32
    out = predictive_entropy(p32)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, predictive_entropy(p32.astype(np.float64)), atol=1e-5)


def test_helpers_on_empty_pool() -> None:
    p = np.zeros((2, 0, 3))
    assert mean_probabilities(p).shape == (0, 3)
    assert confidence(p).shape == (0,) and confidence(p).dtype == np.float64
    assert predicted_class(p).shape == (0,) and predicted_class(p).dtype == np.int64
