"""Turn per-sample scores into the ranked batch to send for labeling."""

from __future__ import annotations

import operator

import numpy as np
from numpy.typing import ArrayLike

from activelabel.errors import InvalidProbabilitiesError, SelectionSizeError


def check_batch_size(k: int, n: int) -> int:
    """Validate a batch size ``k`` against a pool of ``n`` samples and return it as an ``int``.

    Raises :class:`SelectionSizeError` when ``k`` is not an integer, ``k <= 0`` or ``k > n``.
    Shared by every selection function so they all refuse the same inputs the same way.
    """
    if isinstance(k, bool):
        raise SelectionSizeError(f"number of samples to select must be an integer; got {k!r}")
    try:
        k = operator.index(k)
    except TypeError:
        raise SelectionSizeError(
            f"number of samples to select must be an integer; got {k!r}"
        ) from None
    if k <= 0:
        raise SelectionSizeError(f"number of samples to select must be positive; got {k}")
    if k > n:
        raise SelectionSizeError(
            f"cannot select {k} samples from a pool of {n} unlabeled samples"
        )
    return k


def select_top_k(scores: ArrayLike, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, in rank order (rank 0 = most uncertain).

    Ties are broken deterministically: equal scores -> lower index first. ``k`` may equal the
    pool size. Raises :class:`SelectionSizeError` when ``k <= 0`` or ``k > N`` and
    :class:`InvalidProbabilitiesError` for non-1-D or NaN scores. Returns int64 ``[k]``.
    """
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1:
        raise InvalidProbabilitiesError(f"scores must be 1-D [N]; got shape {arr.shape}")
    if np.isnan(arr).any():
        raise InvalidProbabilitiesError(
            f"scores contain NaN ({int(np.isnan(arr).sum())} of {arr.size}); cannot rank them"
        )
    k = check_batch_size(k, arr.shape[0])
    # Stable sort on the negated scores: descending score, ascending index among equals.
    # (-0.0 and 0.0 compare equal, so they tie as well.)
    order = np.argsort(-arr, kind="stable")
    return order[:k].astype(np.int64)
