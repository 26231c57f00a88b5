"""One contract battery run against every registered strategy.

Feature strategies (``density``) get the pool's features too: :func:`score` and :func:`select`
pass features derived from the probabilities, so every test below holds for them unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

from activelabel.acquisition import STRATEGIES, PoolFeatures, Strategy, fit_class_gaussians

ALL = list(STRATEGIES.values())
IDS = [s.name for s in ALL]


def _features(probs: np.ndarray) -> PoolFeatures:
    """Features a model might give: the log mean prediction ``[N, C]``, scored by a density
    fitted on a fixed labeled set in the same space."""
    p = np.asarray(probs, dtype=np.float64)
    c = p.shape[-1] if p.ndim == 3 else 2
    labeled = np.random.default_rng(99).normal(size=(30, c))
    density = fit_class_gaussians(labeled, np.arange(30) % c, c)
    pool = np.log(p.mean(axis=0) + 1e-3) if p.ndim == 3 and p.shape[0] else np.zeros((0, c))
    return PoolFeatures(density, pool)


def score(strategy: Strategy, probs, **kwargs) -> np.ndarray:
    if strategy.needs_features:
        kwargs["features"] = _features(probs)
    return strategy.score(probs, **kwargs)


def select(strategy: Strategy, probs, k: int, **kwargs):
    if strategy.needs_features:
        kwargs["features"] = _features(probs)
    return strategy.select_batch(probs, k, **kwargs)


def _probs(t: int = 4, n: int = 9, c: int = 3, seed: int = 0) -> np.ndarray:
    w = np.random.default_rng(seed).random((t, n, c))
    return w / w.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_shape_dtype_finite(strategy: Strategy) -> None:
    out = score(strategy, _probs(), rng=np.random.default_rng(1))
    assert isinstance(out, np.ndarray)
    assert out.shape == (9,)
    assert out.dtype == np.float64
    assert np.isfinite(out).all()


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_empty_pool_gives_empty_scores(strategy: Strategy) -> None:
    out = score(strategy, np.zeros((3, 0, 4)), rng=np.random.default_rng(0))
    assert out.shape == (0,)
    assert out.dtype == np.float64


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_accepts_single_pass_and_two_classes(strategy: Strategy) -> None:
    out = score(strategy, _probs(t=1, c=2), rng=np.random.default_rng(0))
    assert out.shape == (9,) and np.isfinite(out).all()
    if strategy.needs_samples:
        np.testing.assert_array_equal(out, 0.0)


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_reproducible_with_same_seed(strategy: Strategy) -> None:
    p = _probs()
    a = score(strategy, p, rng=np.random.default_rng(42))
    b = score(strategy, p, rng=np.random.default_rng(42))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_seed_dependence(strategy: Strategy) -> None:
    p = _probs()
    a = score(strategy, p, rng=np.random.default_rng(1))
    b = score(strategy, p, rng=np.random.default_rng(2))
    if strategy.name == "random":
        assert not np.array_equal(a, b)
        assert ((a >= 0) & (a < 1)).all()
    else:  # deterministic strategies ignore rng entirely
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, score(strategy, p))


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_does_not_modify_input(strategy: Strategy) -> None:
    p = _probs()
    before = p.copy()
    score(strategy, p, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(p, before)


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_rejects_invalid_probabilities(strategy: Strategy) -> None:
    from activelabel.errors import InvalidProbabilitiesError

    with pytest.raises(InvalidProbabilitiesError):
        score(strategy, np.full((2, 3, 2), 0.9), rng=np.random.default_rng(0))


def test_random_requires_a_generator_type() -> None:
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        STRATEGIES["random"].score(_probs(), rng=42)  # type: ignore[arg-type]


def test_random_without_rng_still_works() -> None:
    out = STRATEGIES["random"].score(_probs())
    assert out.shape == (9,) and ((out >= 0) & (out < 1)).all()


# ---------------------------------------------------------------------------------------------
# Batch selection: every strategy, per-sample or batch-aware, through Strategy.select_batch.
# ---------------------------------------------------------------------------------------------


def _shared_pass_probs(t: int = 6, n: int = 40, c: int = 4, seed: int = 3) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(scale=2.0, size=(t, n, c))
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
@pytest.mark.parametrize("k", [1, 5, 12])
def test_batch_is_k_distinct_indices_in_range(strategy: Strategy, k: int) -> None:
    p = _shared_pass_probs()
    batch = select(strategy, p, k, rng=np.random.default_rng(0))
    assert batch.indices.dtype == np.int64 and batch.indices.shape == (k,)
    assert batch.scores.dtype == np.float64 and batch.scores.shape == (k,)
    assert len(set(batch.indices.tolist())) == k
    assert ((batch.indices >= 0) & (batch.indices < p.shape[1])).all()
    assert np.isfinite(batch.scores).all()


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_batch_can_take_the_whole_pool(strategy: Strategy) -> None:
    p = _probs()
    batch = select(strategy, p, 9, rng=np.random.default_rng(0))
    assert sorted(batch.indices.tolist()) == list(range(9))


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_batch_reproducible_with_same_seed(strategy: Strategy) -> None:
    p = _shared_pass_probs()
    a = select(strategy, p, 8, rng=np.random.default_rng(5))
    b = select(strategy, p, 8, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
@pytest.mark.parametrize("k", [0, -1, 10])
def test_batch_size_out_of_range_is_refused(strategy: Strategy, k: int) -> None:
    from activelabel.errors import SelectionSizeError

    with pytest.raises(SelectionSizeError):
        select(strategy, _probs(), k, rng=np.random.default_rng(0))


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_batch_rejects_invalid_probabilities(strategy: Strategy) -> None:
    from activelabel.errors import InvalidProbabilitiesError

    with pytest.raises(InvalidProbabilitiesError):
        select(strategy, np.full((2, 3, 2), 0.9), 1, rng=np.random.default_rng(0))


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_batch_does_not_modify_input(strategy: Strategy) -> None:
    p = _shared_pass_probs()
    before = p.copy()
    select(strategy, p, 4, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(p, before)


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_batch_single_pass_still_selects(strategy: Strategy) -> None:
    batch = select(strategy, _probs(t=1, c=2), 3, rng=np.random.default_rng(0))
    assert len(set(batch.indices.tolist())) == 3


@pytest.mark.parametrize("strategy", [s for s in ALL if not s.batch_aware], ids=lambda s: s.name)
def test_per_sample_batch_is_top_k_of_scores(strategy: Strategy) -> None:
    from activelabel.acquisition import select_top_k

    p = _shared_pass_probs()
    batch = select(strategy, p, 7, rng=np.random.default_rng(9))
    scores = score(strategy, p, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(batch.indices, select_top_k(scores, 7))
    np.testing.assert_array_equal(batch.scores, scores[batch.indices])


STOCHASTIC_BATCHES = {"random", "power_bald", "softmax_bald"}


@pytest.mark.parametrize("strategy", ALL, ids=IDS)
def test_batch_seed_dependence(strategy: Strategy) -> None:
    p = _shared_pass_probs(n=200)
    # k = 5 with C = 4: BatchBALD's joint stays exact (4^4 = 256 <= 1000 configurations), so
    # only the stochastic strategies may depend on the seed.
    batches = {
        tuple(select(strategy, p, 5, rng=np.random.default_rng(seed)).indices.tolist())
        for seed in range(4)
    }
    if strategy.name in STOCHASTIC_BATCHES:
        assert len(batches) > 1
    else:
        assert len(batches) == 1
