"""Acquisition functions: pure numpy math over class probabilities.

Convention (used by every function in this package):

* Probabilities are shaped ``[T, N, C]``: ``T`` stochastic forward passes (MC-dropout samples
  or ensemble members; ``T = 1`` for a deterministic model, see :func:`deterministic`),
  ``N`` pool samples, ``C >= 2`` classes. Each ``[t, n, :]`` row sums to 1.
  float32 or float64 input is accepted; everything is computed in float64.
* Every score function has the signature ``fn(probs, *, rng=None) -> np.ndarray`` and reduces
  T and C to a float64 ``[N]`` array where HIGHER = MORE UNCERTAIN = selected first.
  Entropies are in nats. ``N = 0`` gives an empty ``[0]`` array.
* :func:`select_top_k` turns scores into the ranked batch (ties -> lower index first).
* Batch-aware selectors (:func:`batchbald_select`, :func:`power_bald_select`,
  :func:`softmax_bald_select`) choose the batch jointly; ``Strategy.select_batch`` gives one
  call for both kinds (see :mod:`activelabel.acquisition.registry`).
* :func:`uncertainty_decomposition` splits total uncertainty into aleatoric + epistemic.
* Feature density (DDU) works on features, not probabilities:
  :mod:`activelabel.acquisition.density`.

References: Gal, Islam & Ghahramani 2017 ("Deep Bayesian Active Learning with Image Data");
Kirsch, van Amersfoort & Gal 2019 ("BatchBALD"); Kirsch et al. 2021 ("Stochastic Batch
Acquisition"); Mukhoti et al. 2021 ("Deep Deterministic Uncertainty").
"""

from __future__ import annotations

from activelabel.acquisition.batchbald import (
    BatchSelection,
    batchbald_select,
    power_bald_select,
    softmax_bald_select,
)
from activelabel.acquisition.density import (
    GaussianDensity,
    PoolFeatures,
    density_score,
    density_scores,
    fit_class_gaussians,
    is_ood,
    ood_threshold,
    out_of_fold_log_densities,
)
from activelabel.acquisition.decomposition import Decomposition, uncertainty_decomposition
from activelabel.acquisition.registry import (
    ALIASES,
    STRATEGIES,
    Strategy,
    get_strategy,
    strategy_names,
)
from activelabel.acquisition.selection import check_batch_size, select_top_k
from activelabel.acquisition.summaries import confidence, mean_probabilities, predicted_class
from activelabel.acquisition.uncertainty import (
    bald,
    least_confidence,
    margin,
    mean_std,
    predictive_entropy,
    random_scores,
    variation_ratios,
)
from activelabel.acquisition.validation import as_probabilities, deterministic

__all__ = [
    "ALIASES",
    "STRATEGIES",
    "BatchSelection",
    "Decomposition",
    "GaussianDensity",
    "PoolFeatures",
    "Strategy",
    "as_probabilities",
    "bald",
    "batchbald_select",
    "check_batch_size",
    "confidence",
    "density_score",
    "density_scores",
    "deterministic",
    "fit_class_gaussians",
    "get_strategy",
    "is_ood",
    "out_of_fold_log_densities",
    "least_confidence",
    "margin",
    "mean_probabilities",
    "mean_std",
    "ood_threshold",
    "power_bald_select",
    "predicted_class",
    "predictive_entropy",
    "random_scores",
    "select_top_k",
    "softmax_bald_select",
    "strategy_names",
    "uncertainty_decomposition",
    "variation_ratios",
]
