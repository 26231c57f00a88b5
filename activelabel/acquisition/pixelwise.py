"""Per-pixel uncertainty maps for segmentation, and their reduction to one score per image.

Convention: probabilities are shaped ``[T, N, C, H, W]``: ``T`` stochastic passes (MC-dropout
masks or ensemble members; ``T = 1`` for a deterministic model), ``N`` images, ``C >= 2``
classes, ``H x W`` pixels; each ``[t, n, :, y, x]`` sums to 1. This is the classification
tensor ``[T, N, C]`` with every pixel a sample, and every map here is the classification
score of :mod:`activelabel.acquisition.uncertainty` computed per pixel, in float64.

Maps (each reduces T and C, giving float64 ``[N, H, W]``; higher = more uncertain except for
``max_softmax``):

* ``entropy``: predictive entropy ``H[mean_t p_t]`` in nats, range [0, log C] (total
  uncertainty; Gal, Islam & Ghahramani 2017);
* ``bald``: mutual information ``H[mean_t p_t] - mean_t H[p_t]`` in nats, range
  [0, entropy] (epistemic part; Houlsby et al. 2011; per pixel as in Kendall, Badrinarayanan &
  Cipolla 2017, "Bayesian SegNet");
* ``variance``: MC variance ``mean_c Var_t p_t[c]`` (population variance over T, averaged
  over classes), in probability², range [0, 0.25];
* ``max_softmax``: ``max_c mean_t p_t[c]``, the "softmax confidence heat map" practitioners
  read, range [1/C, 1]. It is the comparison map: LOW means uncertain. With ``T = 1`` it is the
  plain softmax confidence.

Memory: :func:`pixel_maps` converts at most ``chunk_size`` images of the input to float64 at a
time, and :func:`stream_pixel_maps` consumes an iterator of chunks, so the pool's full
``[T, N, C, H, W]`` tensor is never needed. Every map of an image depends only on that
image's probabilities, so chunked and unchunked results are identical.

Image scores (:func:`aggregate`): ``mean``, ``max``, ``top_q`` (mean of the top fraction q of
pixels) and ``class_weighted`` (pixels of rare predicted classes count more), each honouring an
``ignore`` mask.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from activelabel.acquisition.validation import RANGE_TOLERANCE, SUM_TOLERANCE
from activelabel.errors import InvalidArrayError, InvalidProbabilitiesError

MapName = Literal["entropy", "bald", "variance", "max_softmax"]
#: The maps :func:`pixel_maps` computes, in order.
MAP_NAMES: tuple[str, ...] = ("entropy", "bald", "variance", "max_softmax")
Aggregation = Literal["mean", "max", "top_q", "class_weighted"]
AGGREGATIONS: tuple[str, ...] = ("mean", "max", "top_q", "class_weighted")
#: Images converted to float64 at once by :func:`pixel_maps` (bounds its working memory).
DEFAULT_CHUNK = 16


@dataclass(frozen=True)
class PixelMaps:
    """Per-pixel maps of ``N`` images, each float64 ``[N, H, W]`` (``predicted``: int64).

    ``predicted`` is ``argmax_c mean_t p`` (ties -> lowest class index), the predicted mask.
    """

    entropy: np.ndarray
    bald: np.ndarray
    variance: np.ndarray
    max_softmax: np.ndarray
    predicted: np.ndarray

    def get(self, name: str) -> np.ndarray:
        """The map called ``name`` (one of :data:`MAP_NAMES`, or ``predicted``); ``KeyError`` otherwise."""
        if name not in (*MAP_NAMES, "predicted"):
            raise KeyError(f"unknown pixel map {name!r}; choose one of: {', '.join(MAP_NAMES)}")
        return getattr(self, name)

    def __len__(self) -> int:
        return int(self.entropy.shape[0])


def _check_shape(arr: np.ndarray) -> None:
    if arr.ndim != 5:
        raise InvalidProbabilitiesError(
            f"expected per-pixel probabilities shaped [T, N, C, H, W]; got shape {arr.shape}"
        )


def _as_pixel_probabilities(chunk: np.ndarray) -> np.ndarray:
    """A validated float64 copy of a 5-D chunk, clipped into [0, 1] and renormalised per pixel.

    The checks of :func:`~activelabel.acquisition.validation.as_probabilities`, done along the
    class axis in place (no transposed copy): finite values, values in [0, 1] within
    ``RANGE_TOLERANCE``, each ``[t, n, :, y, x]`` summing to 1 within ``SUM_TOLERANCE``.
    """
    arr = np.array(chunk, dtype=np.float64, copy=True)
    if arr.size == 0:
        return arr
    lo, hi = float(arr.min()), float(arr.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise InvalidProbabilitiesError(
            f"probabilities contain non-finite values: {n_nan} NaN and {n_inf} inf in shape {arr.shape}"
        )
    if lo < -RANGE_TOLERANCE or hi > 1.0 + RANGE_TOLERANCE:
        n_bad = int(((arr < -RANGE_TOLERANCE) | (arr > 1.0 + RANGE_TOLERANCE)).sum())
        raise InvalidProbabilitiesError(
            f"probabilities must lie in [0, 1]; {n_bad} values are outside (min {lo:.6g}, max {hi:.6g}); "
            "pass softmax outputs over the class axis (axis 2 of [T, N, C, H, W]), not logits"
        )
    if lo < 0.0 or hi > 1.0:
        np.clip(arr, 0.0, 1.0, out=arr)
    sums = arr.sum(axis=2, keepdims=True)
    off = np.abs(sums - 1.0) > SUM_TOLERANCE
    if off.any():
        raise InvalidProbabilitiesError(
            f"{int(off.sum())} of {off.size} pixels' probabilities over the class axis (axis 2 of "
            f"[T, N, C, H, W]) do not sum to 1 (tolerance {SUM_TOLERANCE:g}); apply the softmax over classes"
        )
    arr /= sums
    return arr


def _plogp_sum(p: np.ndarray, axis: int) -> np.ndarray:
    """``-sum p log p`` over ``axis`` in nats, with 0 log 0 = 0 (log of the smallest normal
    float stands in for log 0: finite, and 0 times it is exactly 0)."""
    return -np.sum(p * np.log(np.maximum(p, np.finfo(np.float64).tiny)), axis=axis)


def _maps_of_chunk(chunk: np.ndarray) -> PixelMaps:
    """All maps of one already 5-D chunk ``[T, b, C, H, W]`` (validated here, in float64)."""
    p = _as_pixel_probabilities(chunk)
    mean = p.mean(axis=0)  # [b, C, H, W]
    total = _plogp_sum(mean, axis=1)
    expected = _plogp_sum(p, axis=2).mean(axis=0)
    # std/var are shift-invariant: shifting by the first pass makes identical passes exactly 0.
    variance = np.var(p - p[:1], axis=0).mean(axis=1)
    # Identical passes carry no disagreement: BALD exactly 0 there (as decomposition.py does).
    bald = np.where(variance == 0.0, 0.0, np.clip(total - expected, 0.0, total))
    return PixelMaps(
        entropy=total,
        bald=bald,
        variance=variance,
        max_softmax=mean.max(axis=1),
        predicted=np.argmax(mean, axis=1).astype(np.int64),
    )


def _concat(parts: list[PixelMaps], shape: tuple[int, int, int]) -> PixelMaps:
    if not parts:
        empty = np.zeros(shape, dtype=np.float64)
        return PixelMaps(empty, empty.copy(), empty.copy(), empty.copy(), np.zeros(shape, dtype=np.int64))
    return PixelMaps(*(np.concatenate([getattr(p, f) for p in parts]) for f in (*MAP_NAMES, "predicted")))


def pixel_maps(probs: ArrayLike, *, chunk_size: int = DEFAULT_CHUNK) -> PixelMaps:
    """Entropy, BALD, variance and max-softmax maps of ``[T, N, C, H, W]`` probabilities.

    Reduces T and C per pixel; returns :class:`PixelMaps` of float64 ``[N, H, W]`` arrays
    (definitions and units in the module docstring). The input may be float32; at most
    ``chunk_size`` images are converted to float64 at a time. Raises
    :class:`~activelabel.errors.InvalidProbabilitiesError` for a tensor that is not 5-D, has
    ``C < 2``, non-finite values, values outside [0, 1] or pixels not summing to 1.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of images; got {chunk_size}")
    arr = probs if isinstance(probs, np.ndarray) else np.asarray(probs, dtype=np.float64)
    _check_shape(arr)
    t, n, c, h, w = arr.shape
    if t < 1 or c < 2:
        raise InvalidProbabilitiesError(
            f"expected T >= 1 passes and C >= 2 classes in [T, N, C, H, W]; got shape {arr.shape}"
        )
    parts = [_maps_of_chunk(arr[:, s : s + chunk_size]) for s in range(0, n, chunk_size)]
    return _concat(parts, (0, h, w))


def stream_pixel_maps(chunks: Iterable[ArrayLike], *, chunk_size: int = DEFAULT_CHUNK) -> Iterator[PixelMaps]:
    """:func:`pixel_maps` of each ``[T, b, C, H, W]`` chunk, one chunk at a time.

    Memory stays bounded by one chunk, whatever the pool size. Yields one :class:`PixelMaps`
    per chunk (``b`` images each), in order.
    """
    for chunk in chunks:
        yield pixel_maps(chunk, chunk_size=chunk_size)


def _as_maps(values: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 3:
        raise InvalidArrayError(f"{name} must be shaped [N, H, W]; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InvalidArrayError(f"{name} contains {int((~np.isfinite(arr)).sum())} non-finite values")
    return arr


def _valid_mask(shape: tuple[int, ...], ignore: ArrayLike | None) -> np.ndarray:
    if ignore is None:
        return np.ones(shape, dtype=bool)
    mask = np.asarray(ignore)
    if mask.shape != shape:
        raise InvalidArrayError(f"ignore mask shaped {mask.shape} does not match the maps {shape}")
    return ~mask.astype(bool)


def aggregate(
    maps: ArrayLike,
    how: Aggregation = "mean",
    *,
    q: float = 0.1,
    ignore: ArrayLike | None = None,
    predicted: ArrayLike | None = None,
    class_weights: ArrayLike | None = None,
) -> np.ndarray:
    """Reduce per-pixel maps ``[N, H, W]`` to one float64 score per image ``[N]``.

    Pixels where ``ignore`` (bool ``[N, H, W]``) is True take no part. An image whose pixels are
    all ignored scores 0 (nothing in it to annotate). ``how``:

    * ``mean``: mean over the image's valid pixels;
    * ``max``: the largest valid pixel value;
    * ``top_q``: mean of the ``ceil(q * n_valid)`` largest valid values (at least one pixel),
      ``0 < q <= 1``; ``q = 1`` is the mean and a tiny q the max. Boundaries are thin, so a
      mean drowns them in confident background and a max follows one noisy pixel; top-q sits
      between (e.g. Mackowiak et al. 2018, "CEREALS", score regions rather than single pixels);
    * ``class_weighted``: ``sum_p w[y_p] u_p / sum_p w[y_p]`` with ``y = predicted`` (int
      ``[N, H, W]``, required). With ``class_weights`` (``[C]``, non-negative, e.g. inverse
      class frequencies of the labeled set) those weights are used; without, each image weighs
      its classes by the inverse of their pixel count in that image, which makes the score the
      mean over the predicted classes present of each class's mean uncertainty: a class
      covering 1% of the image counts as much as the background.

    The same map and arguments give the same score whether computed for the pool at once or
    chunk by chunk (no statistic crosses images). Raises ``ValueError`` for an unknown ``how``,
    a bad ``q``, or a missing ``predicted``; :class:`~activelabel.errors.InvalidArrayError` for
    mismatched shapes or non-finite values.
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; choose one of: {', '.join(AGGREGATIONS)}")
    values = _as_maps(maps, "uncertainty maps")
    n = values.shape[0]
    valid = _valid_mask(values.shape, ignore)
    flat_v = values.reshape(n, -1)
    flat_ok = valid.reshape(n, -1)
    counts = flat_ok.sum(axis=1)
    out = np.zeros(n, dtype=np.float64)
    has = counts > 0
    if how == "mean":
        sums = np.where(flat_ok, flat_v, 0.0).sum(axis=1)
        out[has] = sums[has] / counts[has]
    elif how == "max":
        out[has] = np.where(flat_ok, flat_v, -np.inf).max(axis=1)[has]
    elif how == "top_q":
        if not 0.0 < q <= 1.0:
            raise ValueError(f"top_q needs 0 < q <= 1; got q={q}")
        ordered = -np.sort(-np.where(flat_ok, flat_v, -np.inf), axis=1)  # descending, ignored last
        k = np.maximum(1, np.ceil(q * counts - 1e-9).astype(np.int64))
        for i in np.flatnonzero(has):
            out[i] = ordered[i, : k[i]].mean()
    else:
        if predicted is None:
            raise ValueError("class_weighted aggregation needs the predicted mask (predicted=[N, H, W])")
        labels = np.asarray(predicted)
        if labels.shape != values.shape:
            raise InvalidArrayError(f"predicted mask shaped {labels.shape} does not match the maps {values.shape}")
        if labels.size and labels.min() < 0:
            raise InvalidArrayError("predicted mask holds negative class indices")
        flat_y = labels.reshape(n, -1).astype(np.int64)
        c = int(flat_y.max()) + 1 if flat_y.size else 1
        if class_weights is not None:
            weights = np.asarray(class_weights, dtype=np.float64)
            if weights.ndim != 1 or (weights < 0).any() or not np.isfinite(weights).all():
                raise InvalidArrayError("class_weights must be a 1-D array of finite non-negative weights")
            if len(weights) < c:
                raise InvalidArrayError(f"class_weights has {len(weights)} entries but the mask holds class {c - 1}")
        for i in np.flatnonzero(has):
            y = flat_y[i][flat_ok[i]]
            u = flat_v[i][flat_ok[i]]
            if class_weights is None:
                per_class = np.bincount(y, weights=u, minlength=c)
                count = np.bincount(y, minlength=c)
                present = count > 0
                out[i] = float(np.mean(per_class[present] / count[present]))
            else:
                w = weights[y]
                total = w.sum()
                out[i] = float((w * u).sum() / total) if total > 0 else 0.0
    return out


def class_pixel_counts(masks: Iterable[ArrayLike], num_classes: int, *, ignore_index: int = 255) -> np.ndarray:
    """Labeled pixels per class over label masks (each ``[H, W]`` int): int64 ``[num_classes]``.

    Pixels equal to ``ignore_index`` are not counted. Raises
    :class:`~activelabel.errors.InvalidArrayError` for a mask value that is neither a class
    index (``0..num_classes-1``) nor ``ignore_index``.
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    for k, mask in enumerate(masks):
        values = np.asarray(mask).reshape(-1).astype(np.int64)
        values = values[values != ignore_index]
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise InvalidArrayError(
                f"label mask {k} holds class {int(values.max() if values.max() >= num_classes else values.min())}, "
                f"outside 0..{num_classes - 1} (and not the ignore_index {ignore_index})"
            )
        counts += np.bincount(values, minlength=num_classes)[:num_classes]
    return counts


def inverse_frequency_weights(counts: ArrayLike) -> np.ndarray:
    """Class weights ``[C]`` float64 for ``class_weighted`` aggregation: inverse pixel frequency.

    ``w_c = (1 / f_c) / sum_k (1 / f_k)`` with ``f_c = counts[c] / sum(counts)``: the weights sum
    to 1 and a class with half the pixels of another weighs twice as much. A class with no
    labeled pixel (not painted yet) gets the largest weight of the observed classes (as rare as
    the rarest seen: finite, and never ignored); with no labeled pixel at all every class weighs
    ``1 / C``. Raises :class:`~activelabel.errors.InvalidArrayError` for a negative or
    non-finite count or an empty ``counts``.
    """
    n = np.asarray(counts, dtype=np.float64)
    if n.ndim != 1 or n.size == 0 or (n < 0).any() or not np.isfinite(n).all():
        raise InvalidArrayError("class pixel counts must be a non-empty 1-D array of finite non-negative numbers")
    seen = n > 0
    if not seen.any():
        return np.full(n.size, 1.0 / n.size)
    raw = np.zeros(n.size)
    raw[seen] = n.sum() / n[seen]
    raw[~seen] = raw[seen].max()
    return raw / raw.sum()


@dataclass(frozen=True)
class MapSummary:
    """Summary of one image's map: ``mean``, ``max`` and the mean of its top ``q`` fraction."""

    mean: float
    max: float
    top_q_mean: float
    q: float


def summarize_map(values: ArrayLike, *, q: float = 0.1, ignore: ArrayLike | None = None) -> MapSummary:
    """Mean, max and top-q mean of one ``[H, W]`` map (what the database stores with a heatmap)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise InvalidArrayError(f"a single map must be shaped [H, W]; got shape {arr.shape}")
    ign = None if ignore is None else np.asarray(ignore)[None]
    one = arr[None]
    return MapSummary(
        mean=float(aggregate(one, "mean", ignore=ign)[0]),
        max=float(aggregate(one, "max", ignore=ign)[0]),
        top_q_mean=float(aggregate(one, "top_q", q=q, ignore=ign)[0]),
        q=q,
    )
