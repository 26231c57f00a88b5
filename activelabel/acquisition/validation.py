"""Input checks for probability tensors.

Every score function in :mod:`activelabel.acquisition` goes through :func:`as_probabilities`,
so a malformed model output fails once, early, with a message that says what is wrong,
instead of surfacing later as NaN scores or a silently wrong selection.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from activelabel.errors import InvalidProbabilitiesError

#: Values may stray this far outside [0, 1] (float noise from softmax) before being rejected.
RANGE_TOLERANCE = 1e-6
#: Each ``[t, n, :]`` row must sum to 1 within this tolerance (float32 softmax passes easily).
SUM_TOLERANCE = 1e-3


def _as_float64(probs: ArrayLike) -> np.ndarray:
    """Convert anything array-like to a float64 ndarray, turning conversion failures into typed errors."""
    try:
        return np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidProbabilitiesError(
            f"probabilities must be a numeric array shaped [T, N, C]; could not convert: {exc}"
        ) from exc


def as_probabilities(probs: ArrayLike) -> np.ndarray:
    """Validate a ``[T, N, C]`` probability tensor and return it as a clean float64 array.

    Checks: 3-D, ``T >= 1``, ``N >= 0``, ``C >= 2``, all finite, every value in [0, 1]
    (tolerance ``RANGE_TOLERANCE``) and every ``[t, n, :]`` row summing to 1 (tolerance
    ``SUM_TOLERANCE``). The returned copy is clipped into [0, 1] and each row is renormalised to
    sum to exactly 1 (up to float rounding), so downstream scores keep their documented ranges
    (e.g. entropy <= log C). Raises :class:`InvalidProbabilitiesError` naming the problem.
    """
    arr = _as_float64(probs)
    if arr.ndim != 3:
        raise InvalidProbabilitiesError(
            f"expected probabilities shaped [T, N, C]; got shape {arr.shape} "
            "(use deterministic() to add the T axis to an [N, C] array)"
        )
    t, n, c = arr.shape
    if t < 1:
        raise InvalidProbabilitiesError(
            f"expected at least one forward pass (T >= 1) in [T, N, C]; got shape {arr.shape}"
        )
    if c < 2:
        raise InvalidProbabilitiesError(
            f"expected at least 2 classes (C >= 2) in [T, N, C]; got C={c} in shape {arr.shape}"
        )
    if arr.size == 0:
        return arr.copy()

    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(arr.size - finite.sum() - n_nan)
        raise InvalidProbabilitiesError(
            f"probabilities contain non-finite values: {n_nan} NaN and {n_inf} inf "
            f"in shape {arr.shape}"
        )

    lo, hi = float(arr.min()), float(arr.max())
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        n_bad = int(((arr < -RANGE_TOLERANCE) | (arr > 1.0 + RANGE_TOLERANCE)).sum())
        raise InvalidProbabilitiesError(
            f"probabilities must lie in [0, 1]; {n_bad} values are outside "
            f"(min {lo:.6g}, max {hi:.6g}); pass softmax outputs, not logits"
        )

    arr = np.clip(arr, 0.0, 1.0)
    sums = arr.sum(axis=-1)
    off = np.abs(sums - 1.0) > SUM_TOLERANCE
    if off.any():
        worst = float(sums.flat[int(np.argmax(np.abs(sums - 1.0)))])
        raise InvalidProbabilitiesError(
            f"{int(off.sum())} of {sums.size} probability rows [t, n, :] do not sum to 1 "
            f"(worst sum {worst:.6g}, tolerance {SUM_TOLERANCE:g})"
        )
    return arr / sums[..., None]


def deterministic(probs_nc: ArrayLike) -> np.ndarray:
    """Wrap one deterministic prediction ``[N, C]`` as a validated ``[1, N, C]`` tensor (T = 1).

    Sample-based strategies (BALD, Mean STD, variation ratios) return 0 everywhere for T = 1.
    """
    arr = _as_float64(probs_nc)
    if arr.ndim != 2:
        raise InvalidProbabilitiesError(
            f"expected a deterministic prediction shaped [N, C]; got shape {arr.shape}"
        )
    return as_probabilities(arr[None, :, :])
