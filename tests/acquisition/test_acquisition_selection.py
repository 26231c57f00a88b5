"""select_top_k: rank order, tie-breaking, sizes, NaN."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from activelabel.acquisition import select_top_k
from activelabel.errors import InvalidProbabilitiesError, SelectionSizeError


def test_rank_order() -> None:
    out = select_top_k(np.array([0.1, 0.9, 0.5, 0.7]), 3)
    np.testing.assert_array_equal(out, [1, 3, 2])
    assert out.dtype == np.int64


def test_ties_lower_index_first() -> None:
    np.testing.assert_array_equal(select_top_k([0.5, 0.9, 0.5, 0.9, 0.5], 4), [1, 3, 0, 2])
    np.testing.assert_array_equal(select_top_k([0.0, -0.0, 0.0], 3), [0, 1, 2])


def test_k_equal_to_pool_returns_full_ranking() -> None:
    np.testing.assert_array_equal(select_top_k([3.0, 1.0, 2.0], 3), [0, 2, 1])


def test_numpy_integer_k_accepted() -> None:
    np.testing.assert_array_equal(select_top_k([1.0, 2.0], np.int64(1)), [1])


def test_infinite_scores_rank_at_the_ends() -> None:
    np.testing.assert_array_equal(select_top_k([-np.inf, 1.0, np.inf], 3), [2, 1, 0])


def test_k_larger_than_pool() -> None:
    with pytest.raises(SelectionSizeError) as info:
        select_top_k(np.zeros(30), 50)
    msg = str(info.value)
    assert "50" in msg and "30" in msg and "unlabeled" in msg


@pytest.mark.parametrize("k", [0, -3])
def test_non_positive_k(k: int) -> None:
    with pytest.raises(SelectionSizeError, match=str(k)):
        select_top_k(np.zeros(5), k)


@pytest.mark.parametrize("k", [2.0, "2", True])
def test_non_integer_k(k: object) -> None:
    with pytest.raises(SelectionSizeError, match="integer"):
        select_top_k(np.zeros(5), k)  # type: ignore[arg-type]


def test_empty_pool_cannot_select() -> None:
    with pytest.raises(SelectionSizeError, match="pool of 0"):
        select_top_k(np.zeros(0), 1)


def test_nan_rejected() -> None:
    with pytest.raises(InvalidProbabilitiesError, match="NaN"):
        select_top_k([0.1, np.nan, 0.3], 1)


def test_scores_must_be_one_d() -> None:
    with pytest.raises(InvalidProbabilitiesError, match=r"1-D.*\(2, 2\)"):
        select_top_k(np.zeros((2, 2)), 1)


def test_selection_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        select_top_k([1.0], 2)


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 40), elements=st.sampled_from([0.0, 0.25, 0.5, 1.0]) | st.floats(-10, 10)),
    st.data(),
)
def test_matches_reference_ranking(scores: np.ndarray, data: st.DataObject) -> None:
    k = data.draw(st.integers(1, scores.size))
    out = select_top_k(scores, k)
    expected = sorted(range(scores.size), key=lambda i: (-scores[i], i))[:k]
    assert out.tolist() == expected
    assert len(set(out.tolist())) == k
