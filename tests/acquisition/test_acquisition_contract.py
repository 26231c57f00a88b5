"""One contract battery run against every registered strategy."""

from __future__ import annotations

import numpy as np
import pytest

from activelabel.acquisition import STRATEGIES, Strategy

ALL = list(STRATEGIES.values())
IDS = [s.name for s in ALL]


def _probs(t: int = 4, n: int = 9, c: int = 3, seed: int = 0) -> np.ndarray:
    w = np.random.default_rng(seed).random((t, n, c))
    return w / w.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_shape_dtype_finite(strategy: Strategy) -> None:
    out = strategy.score(_probs(), rng=np.random.default_rng(1))
    assert isinstance(out, np.ndarray)
    assert out.shape == (9,)
    assert out.dtype == np.float64
    assert np.isfinite(out).all()


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_empty_pool_gives_empty_scores(strategy: Strategy) -> None:
    out = strategy.score(np.zeros((3, 0, 4)), rng=np.random.default_rng(0))
    assert out.shape == (0,)
    assert out.dtype == np.float64


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_accepts_single_pass_and_two_classes(strategy: Strategy) -> None:
    out = strategy.score(_probs(t=1, c=2), rng=np.random.default_rng(0))
    assert out.shape == (9,) and np.isfinite(out).all()
    if strategy.needs_samples:
        np.testing.assert_array_equal(out, 0.0)


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_reproducible_with_same_seed(strategy: Strategy) -> None:
    p = _probs()
    a = strategy.score(p, rng=np.random.default_rng(42))
    b = strategy.score(p, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_seed_dependence(strategy: Strategy) -> None:
    p = _probs()
    a = strategy.score(p, rng=np.random.default_rng(1))
    b = strategy.score(p, rng=np.random.default_rng(2))
    if strategy.name == "random":
        assert not np.array_equal(a, b)
        assert ((a >= 0) & (a < 1)).all()
    else:  # deterministic strategies ignore rng entirely
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, strategy.score(p))


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_does_not_modify_input(strategy: Strategy) -> None:
    p = _probs()
    before = p.copy()
    strategy.score(p, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(p, before)


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_rejects_invalid_probabilities(strategy: Strategy) -> None:
    from activelabel.errors import InvalidProbabilitiesError

    with pytest.raises(InvalidProbabilitiesError):
        strategy.score(np.full((2, 3, 2), 0.9), rng=np.random.default_rng(0))


def test_random_requires_a_generator_type() -> None:
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        STRATEGIES["random"].score(_probs(), rng=42)  # type: ignore[arg-type]


def test_random_without_rng_still_works() -> None:
    out = STRATEGIES["random"].score(_probs())
    assert out.shape == (9,) and ((out >= 0) & (out < 1)).all()
