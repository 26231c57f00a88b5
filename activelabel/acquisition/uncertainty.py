"""Uncertainty scores: each reduces T and C of a ``[T, N, C]`` tensor to float64 ``[N]``.

Higher score = more uncertain = selected first. All functions share the signature
``fn(probs, *, rng=None) -> np.ndarray``; deterministic scores ignore ``rng``.

References: Gal, Islam & Ghahramani 2017, "Deep Bayesian Active Learning with Image Data"
(max entropy, BALD, variation ratios, Mean STD); Houlsby et al. 2011 / Kirsch et al. 2019
(BALD as mutual information I[y; w | x]).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from activelabel.acquisition.summaries import _mean_over_passes
from activelabel.acquisition.validation import as_probabilities


def _entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats over the last axis, with 0 * log 0 = 0 (no NaN, no warnings)."""
    logp = np.log(p, where=p > 0, out=np.zeros_like(p))
    return -np.sum(p * logp, axis=-1)


def predictive_entropy(probs: ArrayLike, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Max-entropy score ``H[mean_t p]`` in nats: total (aleatoric + epistemic) uncertainty.

    Reduces T by averaging, then C by the entropy. Range [0, log C].
    """
    p = as_probabilities(probs)
    return _entropy(_mean_over_passes(p))


def bald(probs: ArrayLike, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """BALD: mutual information ``H[mean_t p] - mean_t H[p_t]`` in nats (epistemic uncertainty).

    High when the passes are individually confident but disagree. Clipped into
    [0, predictive entropy] to remove float noise. T = 1 gives 0 everywhere.
    """
    p = as_probabilities(probs)
    total = _entropy(_mean_over_passes(p))
    expected = _entropy(p).mean(axis=0)
    return np.clip(total - expected, 0.0, total)


def mean_std(probs: ArrayLike, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Mean STD (Gal 2017): mean over C of the population std over T of ``p[t, n, c]``.

    Equals ``mean_c sqrt(E_t[p^2] - E_t[p]^2)``; computed from deviations (never negative, and
    exactly 0 when all passes agree). T = 1 gives 0 everywhere.
    """
    p = as_probabilities(probs)
    if p.shape[1] == 0:
        return np.zeros(0, dtype=np.float64)
    # std is shift-invariant; shifting by the first pass makes identical passes give exactly 0.
    std = np.std(p - p[:1], axis=0)
    return std.mean(axis=-1)


def variation_ratios(probs: ArrayLike, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Variation ratio ``1 - (count of the modal predicted class over T) / T``.

    Each pass votes for its argmax class (ties -> lowest class index); reduces C by the vote,
    then T by counting the most common vote. Range [0, 1 - 1/T]; T = 1 gives 0 everywhere.
    """
    p = as_probabilities(probs)
    t, n, c = p.shape
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    votes = np.argmax(p, axis=-1)  # [T, N]
    counts = (votes[:, :, None] == np.arange(c)).sum(axis=0)  # [N, C]
    return 1.0 - counts.max(axis=-1) / float(t)


def margin(probs: ArrayLike, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Margin score ``1 - (p_(1) - p_(2))`` on the mean probabilities (top-1 minus top-2).

    Reduces T by averaging, then C by the gap between the two largest classes. Range [0, 1];
    1 means the two best classes are tied.
    """
    mean = _mean_over_passes(as_probabilities(probs))
    top2 = np.sort(mean, axis=-1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def least_confidence(probs: ArrayLike, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Least-confidence score ``1 - max_c mean_t p``. Range [0, 1 - 1/C]."""
    mean = _mean_over_passes(as_probabilities(probs))
    if mean.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    return 1.0 - mean.max(axis=-1)


def random_scores(probs: ArrayLike, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Uniform random scores in [0, 1) — the passive-learning baseline; only N is used.

    ``rng`` defaults to an unseeded ``np.random.default_rng()``; the pipeline always passes a
    seeded generator so rounds are reproducible.
    """
    p = as_probabilities(probs)
    if rng is None:
        rng = np.random.default_rng()
    elif not isinstance(rng, np.random.Generator):
        raise TypeError(
            "rng must be a numpy.random.Generator, e.g. np.random.default_rng(seed); "
            f"got {type(rng).__name__}"
        )
    return rng.random(p.shape[1], dtype=np.float64)
