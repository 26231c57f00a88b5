"""Named acquisition strategies: the names a user types in a campaign config or on the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

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


@dataclass(frozen=True)
class Strategy:
    """One acquisition strategy.

    ``score(probs, *, rng=None)`` maps ``[T, N, C]`` probabilities to float64 ``[N]`` scores,
    higher = selected first. ``needs_samples`` is True when the score is only informative with
    T > 1 stochastic passes (it is 0 everywhere for T = 1).
    """

    name: str
    description: str
    score: ScoreFn
    needs_samples: bool


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
