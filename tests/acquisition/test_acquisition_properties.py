"""Property tests over random probability tensors (hypothesis)."""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
from hypothesis import given, settings

from activelabel.acquisition import (
    STRATEGIES,
    bald,
    least_confidence,
    margin,
    mean_std,
    predictive_entropy,
    variation_ratios,
)

SETTINGS = settings(max_examples=100, deadline=None)
# Properties of functions of the probabilities; feature density reads features instead (its
# contract is in test_acquisition_contract.py, its values in test_acquisition_density*.py).
ON_PROBABILITIES = [s for s in STRATEGIES.values() if not s.needs_features]
DETERMINISTIC = [s for s in ON_PROBABILITIES if s.name != "random"]
SMOOTH = [predictive_entropy, bald, mean_std, margin, least_confidence]  # continuous in p
TOL = 1e-12


@st.composite
def prob_tensors(
    draw: st.DrawFn,
    t: st.SearchStrategy[int] = st.integers(1, 6),
    n: st.SearchStrategy[int] = st.integers(1, 8),
    c: st.SearchStrategy[int] = st.integers(2, 6),
) -> np.ndarray:
    """[T, N, C] float64 probabilities; raw weights include exact zeros (via 0.0 and sparsity)."""
    shape = (draw(t), draw(n), draw(c))
    weights = draw(
        hnp.arrays(
            np.float64,
            shape,
            elements=st.one_of(
                st.just(0.0),
                st.floats(1e-6, 1.0, allow_nan=False, allow_infinity=False),
            ),
        )
    )
    dead = weights.sum(axis=-1) == 0  # all-zero rows -> one-hot on class 0
    weights[..., 0] += dead
    return weights / weights.sum(axis=-1, keepdims=True)


@SETTINGS
@given(prob_tensors())
def test_outputs_shape_dtype_finite(p: np.ndarray) -> None:
    for s in ON_PROBABILITIES:
        out = s.score(p, rng=np.random.default_rng(0))
        assert out.shape == (p.shape[1],), s.name
        assert out.dtype == np.float64, s.name
        assert np.isfinite(out).all(), s.name


@SETTINGS
@given(prob_tensors())
def test_information_ordering(p: np.ndarray) -> None:
    # 0 <= BALD <= H[mean] <= log C
    c = p.shape[2]
    h = predictive_entropy(p)
    mi = bald(p)
    assert (mi >= 0).all()
    assert (mi <= h).all()
    assert (h >= -TOL).all()
    assert (h <= math.log(c) + TOL).all()


@SETTINGS
@given(prob_tensors())
def test_score_ranges(p: np.ndarray) -> None:
    t, _, c = p.shape
    assert ((mean_std(p) >= 0) & (mean_std(p) <= 0.5 + TOL)).all()
    vr = variation_ratios(p)
    assert ((vr >= 0) & (vr <= 1 - 1 / t + TOL)).all()
    assert ((margin(p) >= -TOL) & (margin(p) <= 1 + TOL)).all()
    lc = least_confidence(p)
    assert ((lc >= -TOL) & (lc <= 1 - 1 / c + TOL)).all()


@SETTINGS
@given(prob_tensors(t=st.just(1)), st.integers(1, 6))
def test_identical_passes_have_no_disagreement(p1: np.ndarray, t: int) -> None:
    p = np.repeat(p1, t, axis=0)
    np.testing.assert_allclose(bald(p), 0.0, atol=TOL)
    np.testing.assert_array_equal(mean_std(p), 0.0)
    np.testing.assert_array_equal(variation_ratios(p), 0.0)
    np.testing.assert_allclose(predictive_entropy(p), predictive_entropy(p1), atol=TOL)


@SETTINGS
@given(prob_tensors(t=st.just(1)))
def test_single_pass_sample_scores_are_zero(p: np.ndarray) -> None:
    for s in DETERMINISTIC:
        if s.needs_samples:
            np.testing.assert_array_equal(s.score(p), 0.0, err_msg=s.name)


@SETTINGS
@given(prob_tensors(), st.randoms(use_true_random=False))
def test_permuting_passes_leaves_scores_unchanged(p: np.ndarray, r) -> None:
    perm = list(range(p.shape[0]))
    r.shuffle(perm)
    for s in DETERMINISTIC:
        np.testing.assert_allclose(s.score(p[perm]), s.score(p), rtol=1e-12, atol=TOL, err_msg=s.name)


@SETTINGS
@given(prob_tensors(), st.randoms(use_true_random=False))
def test_permuting_samples_permutes_scores(p: np.ndarray, r) -> None:
    perm = list(range(p.shape[1]))
    r.shuffle(perm)
    for s in DETERMINISTIC:
        np.testing.assert_allclose(s.score(p[:, perm]), s.score(p)[perm], rtol=1e-12, atol=TOL, err_msg=s.name)


@SETTINGS
@given(prob_tensors())
def test_float32_input_accepted_and_close(p: np.ndarray) -> None:
    p32 = p.astype(np.float32)
    for s in DETERMINISTIC:
        out = s.score(p32)
        assert out.dtype == np.float64 and out.shape == (p.shape[1],), s.name
        assert np.isfinite(out).all(), s.name
    for fn in SMOOTH:
        np.testing.assert_allclose(fn(p32), fn(p), atol=1e-4, err_msg=fn.__name__)
