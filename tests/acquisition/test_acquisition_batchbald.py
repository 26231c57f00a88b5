"""BatchBALD and stochastic BALD: exact values, duplicates, and agreement with brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from activelabel.acquisition import bald, select_top_k
from activelabel.acquisition.batchbald import (
    batchbald_select,
    power_bald_select,
    softmax_bald_select,
)
from activelabel.errors import ConfigError, SelectionSizeError

LN2 = math.log(2)


def _random_probs(s: int, n: int, c: int, seed: int, scale: float = 2.0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(scale=scale, size=(s, n, c))
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _joint_mi(p: np.ndarray, points: tuple[int, ...]) -> float:
    """Brute force I[y_points; w] = H[y_points] - sum_i E_s H[y_i | w_s], every config by loop."""
    s, _, c = p.shape
    joint = 0.0
    for config in itertools.product(range(c), repeat=len(points)):
        prob = np.mean([np.prod([p[w, i, y] for i, y in zip(points, config)]) for w in range(s)])
        if prob > 0:
            joint -= prob * math.log(prob)
    conditional = 0.0
    for i in points:
        for w in range(s):
            conditional -= sum(q * math.log(q) for q in p[w, i] if q > 0) / s
    return joint - conditional


def _duplicate_pool() -> np.ndarray:
    """4 ensemble members, 2 classes. A splits members {0,1} | {2,3}; B splits {0,2} | {1,3}.

    Pool: [A, A, A, B, C] where B is a little less confident than A (so BALD ranks the three
    copies of A first) and C is a point every member is sure about.
    """
    a = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    b = np.array([[0.95, 0.05], [0.05, 0.95], [0.95, 0.05], [0.05, 0.95]])
    c = np.array([[1.0, 0.0]] * 4)
    return np.stack([a, a, a, b, c], axis=1)  # [S=4, N=5, C=2]


def test_top_k_bald_takes_the_duplicates_batchbald_does_not() -> None:
    p = _duplicate_pool()
    scores = bald(p)
    # A: votes split 2/2, each member certain -> BALD = ln 2; B: ln 2 - H(0.95) = 0.4946
    assert scores[0] == pytest.approx(LN2)
    assert scores[3] == pytest.approx(LN2 - (-(0.95 * math.log(0.95) + 0.05 * math.log(0.05))))
    np.testing.assert_array_equal(select_top_k(scores, 2), [0, 1])  # two copies of A

    chosen = batchbald_select(p, 2, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(chosen.indices, [0, 3])  # A, then the diverse B
    # gain of A = ln 2; once y_A is known the copy A' adds I[y_A'; w | y_A] = 0 (members are
    # certain), whereas B adds I[y_B; w | y_A] = ln 2 - H(0.95) (y_A leaves {0,1} vs {2,3},
    # and B splits each pair).
    assert chosen.scores[0] == pytest.approx(LN2, abs=1e-12)
    assert chosen.scores[1] == pytest.approx(scores[3], abs=1e-12)
    assert chosen.scores.sum() == pytest.approx(_joint_mi(p, (0, 3)), abs=1e-12)
    assert _joint_mi(p, (0, 1)) == pytest.approx(LN2, abs=1e-12)  # the copy adds nothing


def test_duplicates_never_share_a_batch_until_distinct_points_run_out() -> None:
    p = _duplicate_pool()
    chosen = batchbald_select(p, 3, rng=np.random.default_rng(0))
    assert sorted(chosen.indices[:2].tolist()) == [0, 3]
    assert len(set(chosen.indices.tolist())) == 3


@pytest.mark.parametrize("seed", range(4))
def test_batch_of_two_matches_brute_force_joint(seed: int) -> None:
    p = _random_probs(s=6, n=12, c=3, seed=seed)
    chosen = batchbald_select(p, 2, rng=np.random.default_rng(0))
    first, second = chosen.indices.tolist()
    # first pick is the argmax of BALD, with its BALD score
    assert first == int(np.argmax(bald(p)))
    assert chosen.scores[0] == pytest.approx(bald(p)[first], abs=1e-12)
    # the pair's joint MI is the brute-force value, and no other partner does better
    assert chosen.scores.sum() == pytest.approx(_joint_mi(p, (first, second)), abs=1e-10)
    best_partner = max((j for j in range(12) if j != first), key=lambda j: _joint_mi(p, (first, j)))
    assert second == best_partner


def test_exact_joint_for_three_points_matches_brute_force() -> None:
    p = _random_probs(s=5, n=8, c=3, seed=11)
    chosen = batchbald_select(p, 3, rng=np.random.default_rng(0))
    assert chosen.scores.sum() == pytest.approx(_joint_mi(p, tuple(chosen.indices)), abs=1e-10)
    # gains are non-increasing (submodularity) and positive here
    assert chosen.scores[0] >= chosen.scores[1] >= chosen.scores[2] > 0


def test_sampled_joint_entropy_agrees_with_exact() -> None:
    # Force sampling from the second pick on (max 1 exact configuration) and compare the
    # pair's joint MI estimate with the exact one. M = 60,000 -> standard error ~ 0.003 nats.
    p = _random_probs(s=6, n=10, c=3, seed=5)
    exact = batchbald_select(p, 3, rng=np.random.default_rng(0))
    sampled = batchbald_select(
        p, 3, num_samples=60_000, max_exact_configurations=1, rng=np.random.default_rng(1)
    )
    assert sampled.indices[0] == exact.indices[0]
    truth = _joint_mi(p, tuple(sampled.indices))
    assert sampled.scores.sum() == pytest.approx(truth, abs=0.02)
    assert _joint_mi(p, tuple(exact.indices)) >= truth - 0.02


def test_sampled_selection_is_reproducible_with_a_seed() -> None:
    p = _random_probs(s=8, n=60, c=4, seed=2)
    a = batchbald_select(p, 6, num_samples=200, rng=np.random.default_rng(7))
    b = batchbald_select(p, 6, num_samples=200, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_candidate_pool_restricts_to_top_bald() -> None:
    p = _random_probs(s=6, n=40, c=3, seed=3)
    top = set(select_top_k(bald(p), 8).tolist())
    chosen = batchbald_select(p, 4, candidates=8, rng=np.random.default_rng(0))
    assert set(chosen.indices.tolist()) <= top
    # candidates >= whole pool is the same as no restriction
    full = batchbald_select(p, 4, rng=np.random.default_rng(0))
    again = batchbald_select(p, 4, candidates=1000, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(full.indices, again.indices)


def test_batchbald_rejects_bad_arguments() -> None:
    p = _random_probs(s=3, n=5, c=2, seed=0)
    with pytest.raises(SelectionSizeError):
        batchbald_select(p, 6)
    with pytest.raises(SelectionSizeError):
        batchbald_select(p, 0)
    with pytest.raises(ConfigError, match="num_samples"):
        batchbald_select(p, 2, num_samples=0)
    with pytest.raises(ConfigError, match="candidates"):
        batchbald_select(p, 2, candidates=0)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        batchbald_select(p, 2, rng=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("select", [power_bald_select, softmax_bald_select])
def test_stochastic_bald_skips_duplicates(select) -> None:
    p = _duplicate_pool()
    for seed in range(20):
        chosen = select(p, 2, rng=np.random.default_rng(seed))
        # never two copies of A (0, 1, 2) in one batch while B and C are left
        assert len(set(chosen.indices.tolist()) & {0, 1, 2}) <= 1
        np.testing.assert_allclose(chosen.scores, bald(p)[chosen.indices])


@pytest.mark.parametrize("select", [power_bald_select, softmax_bald_select])
def test_stochastic_bald_fills_with_duplicates_when_needed(select) -> None:
    p = _duplicate_pool()
    chosen = select(p, 5, rng=np.random.default_rng(0))
    assert sorted(chosen.indices.tolist()) == [0, 1, 2, 3, 4]
    # the three distinct points (one A, B, C) come first
    assert {3, 4} <= set(chosen.indices[:3].tolist())


def test_guard_off_allows_duplicates() -> None:
    p = _duplicate_pool()
    found = any(
        len(set(power_bald_select(p, 2, dedup_tolerance=None, coldness=20.0,
                                  rng=np.random.default_rng(seed)).indices.tolist()) & {0, 1, 2}) == 2
        for seed in range(20)
    )
    assert found


def test_high_coldness_tends_to_top_k() -> None:
    p = _random_probs(s=10, n=200, c=5, seed=4)
    chosen = power_bald_select(p, 10, coldness=1e6, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(chosen.indices, select_top_k(bald(p), 10))


def test_power_bald_prefers_high_bald_on_average() -> None:
    # Sampled ∝ BALD: the mean BALD of a PowerBALD batch is above the pool mean, below top-k.
    p = _random_probs(s=10, n=400, c=5, seed=6)
    scores = bald(p)
    means = [power_bald_select(p, 20, rng=np.random.default_rng(seed)).scores.mean() for seed in range(10)]
    assert scores.mean() < np.mean(means) < np.sort(scores)[-20:].mean()


def test_stochastic_rejects_bad_settings() -> None:
    p = _random_probs(s=3, n=5, c=2, seed=0)
    with pytest.raises(ConfigError, match="coldness"):
        power_bald_select(p, 2, coldness=-1.0)
    with pytest.raises(ConfigError, match="dedup_tolerance"):
        softmax_bald_select(p, 2, dedup_tolerance=float("nan"))
    with pytest.raises(SelectionSizeError):
        softmax_bald_select(p, 9)
