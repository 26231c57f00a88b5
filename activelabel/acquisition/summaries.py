"""Per-sample summaries of a ``[T, N, C]`` tensor that the pipeline stores as pre-annotations."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from activelabel.acquisition.validation import as_probabilities


def _mean_over_passes(p: np.ndarray) -> np.ndarray:
    """Average an already validated ``[T, N, C]`` tensor over T (the predictive distribution)."""
    return p.mean(axis=0)


def mean_probabilities(probs: ArrayLike) -> np.ndarray:
    """Predictive distribution ``mean_t p[t]``: reduces T, returns float64 ``[N, C]``."""
    return _mean_over_passes(as_probabilities(probs))


def confidence(probs: ArrayLike) -> np.ndarray:
    """Probability of the predicted class, ``max_c mean_t p``: reduces T and C, float64 ``[N]``."""
    mean = mean_probabilities(probs)
    return mean.max(axis=-1) if mean.shape[0] else np.zeros(0, dtype=np.float64)


def predicted_class(probs: ArrayLike) -> np.ndarray:
    """Predicted label ``argmax_c mean_t p`` (ties -> lowest class index): int64 ``[N]``."""
    mean = mean_probabilities(probs)
    return np.argmax(mean, axis=-1).astype(np.int64)
