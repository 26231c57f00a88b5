"""Several annotators' masks of one image: a per-pixel majority, and how much they agree.

- :func:`majority_mask`: each pixel gets the class most annotators gave it. Pixels an
  annotator marked ``ignore_index`` are that annotator's abstention. A tie between classes, or
  a pixel nobody labeled, becomes ``ignore_index``: a pixel people do not agree on is not
  trained on (it is not silently given the lower class index).
- :func:`mean_pairwise_iou`: the agreement stored with the resolved mask: the mean over
  annotator pairs of the mean IoU over the classes either of the two used, counting only
  pixels both labeled. 1 = identical masks. NaN with fewer than two annotators (no pair).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np

from activelabel.errors import InvalidArrayError


def _stack(masks: Sequence[np.ndarray]) -> np.ndarray:
    if not masks:
        raise InvalidArrayError("no masks to resolve: need at least one annotator's mask")
    arrays = [np.asarray(m) for m in masks]
    shape = arrays[0].shape
    if len(shape) != 2 or any(a.shape != shape for a in arrays):
        raise InvalidArrayError(f"annotators' masks must all be [H, W] of one size; got {[a.shape for a in arrays]}")
    return np.stack(arrays).astype(np.int64)


def majority_mask(masks: Sequence[np.ndarray], num_classes: int, *, ignore_index: int = 255) -> np.ndarray:
    """Per-pixel majority of ``A`` masks ``[H, W]`` -> int64 ``[H, W]`` (ties and unlabeled
    pixels -> ``ignore_index``). Raises :class:`~activelabel.errors.InvalidArrayError` for no
    masks, mismatched shapes, or a value that is neither a class nor ``ignore_index``."""
    stack = _stack(masks)
    labeled = stack != ignore_index
    if (labeled & ((stack < 0) | (stack >= num_classes))).any():
        raise InvalidArrayError(f"masks hold values outside 0..{num_classes - 1} that are not ignore_index {ignore_index}")
    counts = (np.where(labeled, stack, -1)[..., None] == np.arange(num_classes)).sum(axis=0)  # [H, W, C]
    best = counts.max(axis=-1)
    winners = (counts == best[..., None]).sum(axis=-1)
    out = counts.argmax(axis=-1).astype(np.int64)
    out[(best == 0) | (winners > 1)] = ignore_index
    return out


def pair_iou(a: np.ndarray, b: np.ndarray, num_classes: int, *, ignore_index: int = 255) -> float:
    """Mean IoU between two masks over the classes either uses, on pixels both labeled (NaN if none)."""
    both = (a != ignore_index) & (b != ignore_index)
    x, y = a[both], b[both]
    ious = []
    for c in range(num_classes):
        in_x, in_y = x == c, y == c
        union = int((in_x | in_y).sum())
        if union:
            ious.append(int((in_x & in_y).sum()) / union)
    return float(np.mean(ious)) if ious else float("nan")


def mean_pairwise_iou(masks: Sequence[np.ndarray], num_classes: int, *, ignore_index: int = 255) -> float:
    """Mean of :func:`pair_iou` over all annotator pairs (NaN with fewer than two masks)."""
    stack = _stack(masks)
    pairs = [pair_iou(a, b, num_classes, ignore_index=ignore_index) for a, b in combinations(stack, 2)]
    pairs = [p for p in pairs if not np.isnan(p)]
    return float(np.mean(pairs)) if pairs else float("nan")
