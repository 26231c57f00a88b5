"""Total = aleatoric + epistemic, each worked out by hand on small cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from activelabel.acquisition import bald, predictive_entropy
from activelabel.acquisition.decomposition import Decomposition, uncertainty_decomposition
from activelabel.errors import InvalidProbabilitiesError


def _random_probs(s: int, n: int, c: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(s, n, c))
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("seed", range(5))
def test_parts_add_up_within_1e9(seed: int) -> None:
    p = _random_probs(20, 300, 10, seed)
    d = uncertainty_decomposition(p)
    assert isinstance(d, Decomposition)
    assert d.total.shape == d.aleatoric.shape == d.epistemic.shape == (300,)
    assert d.total.dtype == np.float64
    np.testing.assert_allclose(d.aleatoric + d.epistemic, d.total, rtol=0, atol=1e-9)
    assert (d.epistemic >= 0).all() and (d.aleatoric >= 0).all()
    assert (d.total <= math.log(10) + 1e-12).all()
    # The parts are the registered strategies' scores.
    np.testing.assert_allclose(d.total, predictive_entropy(p), rtol=0, atol=1e-15)
    np.testing.assert_allclose(d.epistemic, bald(p), rtol=0, atol=1e-15)


def test_identical_members_have_zero_epistemic() -> None:
    one = _random_probs(1, 50, 4, seed=7)
    p = np.repeat(one, 8, axis=0)  # 8 identical ensemble members
    d = uncertainty_decomposition(p)
    np.testing.assert_array_equal(d.epistemic, 0.0)
    np.testing.assert_allclose(d.aleatoric, d.total, rtol=0, atol=1e-15)
    assert (d.total > 0).all()


def test_float32_identical_members_still_zero() -> None:
    one = _random_probs(1, 50, 10, seed=3).astype(np.float32)
    d = uncertainty_decomposition(np.repeat(one, 5, axis=0))
    np.testing.assert_array_equal(d.epistemic, 0.0)


def test_two_class_case_by_hand() -> None:
    # Sample 0: passes (0.9, 0.1) and (0.1, 0.9) -> confident but disagreeing.
    # Sample 1: both passes (0.5, 0.5) -> pure noise.
    p = np.array(
        [
            [[0.9, 0.1], [0.5, 0.5]],
            [[0.1, 0.9], [0.5, 0.5]],
        ]
    )
    d = uncertainty_decomposition(p)
    h09 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))  # 0.325083
    # sample 0: mean (0.5, 0.5) -> total ln 2 = 0.693147; aleatoric = H(0.9, 0.1) = 0.325083;
    #           epistemic = 0.693147 - 0.325083 = 0.368064
    assert d.total[0] == pytest.approx(math.log(2), abs=1e-15)
    assert d.aleatoric[0] == pytest.approx(h09, abs=1e-15)
    assert d.epistemic[0] == pytest.approx(math.log(2) - h09, abs=1e-15)
    assert d.epistemic[0] == pytest.approx(0.368064, abs=1e-6)
    # sample 1: everything is aleatoric.
    assert d.total[1] == pytest.approx(math.log(2), abs=1e-15)
    assert d.aleatoric[1] == pytest.approx(math.log(2), abs=1e-15)
    assert d.epistemic[1] == 0.0


def test_one_hot_passes_are_pure_epistemic() -> None:
    # 4 confident members voting 0, 0, 1, 1 -> total ln 2, aleatoric 0 (0 log 0 = 0, no NaN).
    p = np.array([[[1.0, 0.0]], [[1.0, 0.0]], [[0.0, 1.0]], [[0.0, 1.0]]])
    d = uncertainty_decomposition(p)
    assert d.aleatoric[0] == 0.0
    assert d.epistemic[0] == pytest.approx(math.log(2), abs=1e-15)


def test_single_pass_has_no_epistemic_part() -> None:
    p = _random_probs(1, 20, 3, seed=1)
    d = uncertainty_decomposition(p)
    np.testing.assert_array_equal(d.epistemic, 0.0)
    np.testing.assert_array_equal(d.aleatoric, d.total)


def test_empty_pool() -> None:
    d = uncertainty_decomposition(np.zeros((3, 0, 4)))
    assert d.total.shape == d.aleatoric.shape == d.epistemic.shape == (0,)


def test_rejects_logits() -> None:
    with pytest.raises(InvalidProbabilitiesError, match="not logits"):
        uncertainty_decomposition(np.full((2, 3, 2), 3.0))


# --- property: the identity holds for any valid tensor, zeros included -----------------------

import hypothesis.extra.numpy as hnp  # noqa: E402
import hypothesis.strategies as st  # noqa: E402
from hypothesis import given, settings  # noqa: E402


@st.composite
def _tensors(draw: st.DrawFn) -> np.ndarray:
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 8)), draw(st.integers(2, 6)))
    w = draw(hnp.arrays(np.float64, shape, elements=st.one_of(st.just(0.0), st.floats(1e-8, 1.0))))
    w[..., 0] += w.sum(axis=-1) == 0
    return w / w.sum(axis=-1, keepdims=True)


@settings(max_examples=150, deadline=None)
@given(_tensors())
def test_identity_and_ranges_hold_for_any_tensor(p: np.ndarray) -> None:
    d = uncertainty_decomposition(p)
    np.testing.assert_allclose(d.aleatoric + d.epistemic, d.total, rtol=0, atol=1e-9)
    assert (d.epistemic >= 0).all() and (d.aleatoric >= 0).all()
    assert (d.total <= math.log(p.shape[2]) + 1e-12).all()
    np.testing.assert_allclose(d.epistemic, bald(p), rtol=0, atol=1e-12)
