"""as_probabilities / deterministic: what is rejected and what the message says."""

from __future__ import annotations

import numpy as np
import pytest

from activelabel.acquisition import as_probabilities, deterministic, predictive_entropy
from activelabel.errors import ActiveLabelError, InvalidProbabilitiesError


def _valid(t: int = 2, n: int = 3, c: int = 3) -> np.ndarray:
    return np.full((t, n, c), 1.0 / c)


def test_valid_input_returns_float64_copy() -> None:
    p = _valid().astype(np.float32)
    out = as_probabilities(p)
    assert out.dtype == np.float64 and out.shape == (2, 3, 3)
    assert out is not p
    np.testing.assert_allclose(out.sum(-1), 1.0)


def test_nested_lists_accepted() -> None:
    out = as_probabilities([[[0.25, 0.75]]])
    np.testing.assert_allclose(out, [[[0.25, 0.75]]])


@pytest.mark.parametrize("shape", [(3,), (3, 2), (1, 2, 3, 2)])
def test_wrong_ndim(shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidProbabilitiesError) as info:
        as_probabilities(np.full(shape, 0.5))
    msg = str(info.value)
    assert "[T, N, C]" in msg
    assert str(shape) in msg


def test_two_d_message_points_to_deterministic() -> None:
    with pytest.raises(InvalidProbabilitiesError, match="deterministic"):
        as_probabilities(np.full((4, 2), 0.5))


def test_single_class_rejected() -> None:
    with pytest.raises(InvalidProbabilitiesError, match=r"C >= 2.*C=1"):
        as_probabilities(np.ones((2, 3, 1)))


def test_zero_passes_rejected() -> None:
    with pytest.raises(InvalidProbabilitiesError, match=r"T >= 1"):
        as_probabilities(np.ones((0, 3, 2)))


def test_nan_rejected() -> None:
    p = _valid()
    p[1, 2, 0] = np.nan
    with pytest.raises(InvalidProbabilitiesError, match="1 NaN"):
        as_probabilities(p)


def test_inf_rejected() -> None:
    p = _valid()
    p[0, 0, 0] = np.inf
    with pytest.raises(InvalidProbabilitiesError, match="1 inf"):
        as_probabilities(p)


def test_negative_rejected() -> None:
    p = np.array([[[1.2, -0.2], [0.5, 0.5]]])
    with pytest.raises(InvalidProbabilitiesError) as info:
        as_probabilities(p)
    msg = str(info.value)
    assert "[0, 1]" in msg and "2 values" in msg and "-0.2" in msg and "logits" in msg


def test_rows_not_summing_to_one() -> None:
    p = np.array([[[0.5, 0.5], [0.3, 0.3], [0.9, 0.9]]])
    with pytest.raises(InvalidProbabilitiesError) as info:
        as_probabilities(p)
    msg = str(info.value)
    assert "2 of 3" in msg and "sum to 1" in msg and "worst sum 1.8" in msg


def test_small_float_noise_is_tolerated_and_cleaned() -> None:
    p = np.array([[[1.0 + 5e-7, -5e-7], [0.5, 0.5 + 5e-4]]])
    out = as_probabilities(p)
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-15)
    assert np.isfinite(predictive_entropy(p)).all()


def test_non_numeric_rejected() -> None:
    with pytest.raises(InvalidProbabilitiesError, match="numeric"):
        as_probabilities([[["a", "b"]]])


def test_empty_pool_is_valid() -> None:
    out = as_probabilities(np.zeros((3, 0, 5)))
    assert out.shape == (3, 0, 5) and out.dtype == np.float64


def test_errors_are_catchable_as_value_error_and_base() -> None:
    with pytest.raises(ValueError):
        as_probabilities(np.ones((2, 2)))
    with pytest.raises(ActiveLabelError):
        as_probabilities(np.ones((2, 2)))


def test_deterministic_adds_pass_axis() -> None:
    out = deterministic([[0.1, 0.9], [0.6, 0.4]])
    assert out.shape == (1, 2, 2)
    np.testing.assert_allclose(out[0], [[0.1, 0.9], [0.6, 0.4]])


def test_deterministic_requires_two_d() -> None:
    with pytest.raises(InvalidProbabilitiesError, match=r"\[N, C\].*\(1, 2, 2\)"):
        deterministic(np.full((1, 2, 2), 0.5))
