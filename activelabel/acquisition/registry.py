"""Named acquisition strategies: the names a user types in a campaign config or on the CLI.

Two kinds share one registry:

* **Per-sample** strategies (entropy, BALD, ...) score every sample alone; the batch is the
  top-k of the scores (:func:`~activelabel.acquisition.select_top_k`).
* **Batch-aware** strategies (``batchbald``, ``power_bald``, ``softmax_bald``) choose the whole
  batch at once, so that one batch does not spend two labels on near-identical samples. They
  still have a per-sample ``score`` (BALD, stored beside each pool sample like any score), and
  add a ``select`` hook that needs the batch size.

How the round calls a strategy (one path for both kinds)::

    strategy = get_strategy(name)
    scores = strategy.score(probs, rng=np.random.default_rng(seed))      # [N], stored per sample
    batch = strategy.select_batch(probs, batch_size, rng=np.random.default_rng(seed))
    # batch.indices: int64 [k] into the pool, rank order; batch.scores: float64 [k]

``select_batch`` needs the ``[S, N, C]`` probabilities, not only the stored scores, so a round
that scores and selects in separate steps must choose the batch while the probabilities are in
memory (or keep them) when ``strategy.batch_aware`` is true.

Feature density (``density``, DDU) scores penultimate-layer features, not probabilities:
its ``needs_features`` is True and the round passes them along::

    scores = strategy.score(probs, rng=rng, features=PoolFeatures(density, pool_features))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from activelabel.acquisition.batchbald import (
    BatchSelection,
    batchbald_select,
    power_bald_select,
    softmax_bald_select,
)
from activelabel.acquisition.density import PoolFeatures, density_strategy_score
from activelabel.acquisition.selection import select_top_k
from activelabel.acquisition.uncertainty import (
    bald,
    least_confidence,
    margin,
    mean_std,
    predictive_entropy,
    random_scores,
    variation_ratios,
)
from activelabel.errors import UnknownStrategyError

ScoreFn = Callable[..., np.ndarray]
#: ``select(probs [S, N, C], k, *, rng=None) -> BatchSelection``
SelectFn = Callable[..., BatchSelection]


@dataclass(frozen=True)
class Strategy:
    """One acquisition strategy.

    ``score(probs, *, rng=None)`` maps ``[T, N, C]`` probabilities to float64 ``[N]`` scores,
    higher = selected first. ``needs_samples`` is True when the score is only informative with
    T > 1 stochastic passes (it is 0 everywhere for T = 1). ``needs_features`` is True when
    ``score`` reads the pool's penultimate features (keyword ``features``, a
    :class:`~activelabel.acquisition.density.PoolFeatures`) instead of the probabilities.

    ``select`` is set for batch-aware strategies only: ``select(probs, k, *, rng=None)`` returns
    a :class:`~activelabel.acquisition.batchbald.BatchSelection` of ``k`` distinct indices.
    Call :meth:`select_batch` rather than ``select`` so that both kinds work the same way.
    """

    name: str
    description: str
    score: ScoreFn
    needs_samples: bool
    select: SelectFn | None = None
    needs_features: bool = False

    @property
    def batch_aware(self) -> bool:
        """True when the batch is chosen jointly (the ``select`` hook), not as top-k scores."""
        return self.select is not None

    def select_batch(
        self, probs: np.ndarray, k: int, *, rng: np.random.Generator | None = None,
        features: PoolFeatures | None = None,
    ) -> BatchSelection:
        """The ranked batch of ``k`` distinct pool indices for ``[T, N, C]`` probabilities.

        Batch-aware strategies run their ``select`` hook; the others take the top-k of
        ``score`` (ties -> lower index) and return those scores. Deterministic for a seeded
        ``rng``. Raises :class:`~activelabel.errors.SelectionSizeError` when ``k <= 0`` or
        ``k > N`` and :class:`~activelabel.errors.InvalidProbabilitiesError` for bad ``probs``.
        """
        if self.select is not None:
            return self.select(probs, k, rng=rng)
        scores = self.score(probs, rng=rng, features=features) if self.needs_features else self.score(probs, rng=rng)
        indices = select_top_k(scores, k)
        return BatchSelection(indices, scores[indices])


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy(
            "entropy",
            "Max entropy: entropy of the mean prediction (total uncertainty); works with T = 1",
            predictive_entropy,
            False,
        ),
        Strategy(
            "bald",
            "BALD: mutual information between prediction and model parameters "
            "(epistemic uncertainty); needs T > 1",
            bald,
            True,
        ),
        Strategy(
            "mean_std",
            "Mean STD: class-averaged standard deviation of the probabilities across passes; "
            "needs T > 1",
            mean_std,
            True,
        ),
        Strategy(
            "variation_ratios",
            "Variation ratios: fraction of passes that disagree with the most common "
            "predicted class; needs T > 1",
            variation_ratios,
            True,
        ),
        Strategy(
            "margin",
            "Margin: small gap between the two most likely classes of the mean prediction; "
            "works with T = 1",
            margin,
            False,
        ),
        Strategy(
            "least_confidence",
            "Least confidence: one minus the probability of the predicted class; works with T = 1",
            least_confidence,
            False,
        ),
        Strategy(
            "random",
            "Random: uniform random order (passive-learning baseline); seeded for reproducibility",
            random_scores,
            False,
        ),
        Strategy(
            "density",
            "Feature density (DDU): low density of the penultimate features under a class-"
            "conditional Gaussian fitted on the labeled set: inputs unlike anything labeled; "
            "one deterministic pass",
            density_strategy_score,
            False,
            needs_features=True,
        ),
        Strategy(
            "batchbald",
            "BatchBALD: greedy batch maximising the joint mutual information of its labels "
            "(no two labels on near-identical samples); needs T > 1 passes shared by the pool",
            bald,
            True,
            batchbald_select,
        ),
        Strategy(
            "power_bald",
            "PowerBALD: batch sampled with probability proportional to BALD (stochastic, cheap "
            "for large batches; skips near-duplicates); needs T > 1",
            bald,
            True,
            power_bald_select,
        ),
        Strategy(
            "softmax_bald",
            "SoftmaxBALD: batch sampled with probability proportional to exp(BALD) (stochastic; "
            "skips near-duplicates); needs T > 1",
            bald,
            True,
            softmax_bald_select,
        ),
    )
}

#: Alternative names that resolve to a canonical strategy (not listed by ``strategy_names``).
ALIASES: dict[str, str] = {
    "variance": "mean_std",
    "mutual_information": "bald",
}


def strategy_names() -> list[str]:
    """Canonical strategy names in their stable display order."""
    return list(STRATEGIES)


def get_strategy(name: str) -> Strategy:
    """Look up a strategy by name or alias (case-insensitive; '-' and ' ' read as '_').

    Raises :class:`UnknownStrategyError` (also a ``KeyError``) listing the valid names.
    """
    if not isinstance(name, str):
        raise UnknownStrategyError(repr(name), strategy_names())
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    key = ALIASES.get(key, key)
    try:
        return STRATEGIES[key]
    except KeyError:
        raise UnknownStrategyError(name, strategy_names()) from None
