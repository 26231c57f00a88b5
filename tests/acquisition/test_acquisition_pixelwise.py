"""Per-pixel maps and image aggregation: hand-computed values, chunking, bounded memory."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from activelabel.acquisition import bald, predictive_entropy
from activelabel.acquisition.pixelwise import aggregate, pixel_maps, stream_pixel_maps, summarize_map
from activelabel.errors import InvalidArrayError, InvalidProbabilitiesError

LN2 = math.log(2)


def _h(*p: float) -> float:
    return -sum(x * math.log(x) for x in p if x > 0)


def _tiny() -> np.ndarray:
    """[T=2, N=1, C=2, 2, 2]: four pixels with known maps."""
    probs = np.zeros((2, 1, 2, 2, 2))
    # pixel (0,0): both passes certain of class 0
    probs[:, 0, :, 0, 0] = [[1, 0], [1, 0]]
    # pixel (0,1): passes certain but disagree
    probs[:, 0, :, 0, 1] = [[1, 0], [0, 1]]
    # pixel (1,0): both passes 50/50 (aleatoric only)
    probs[:, 0, :, 1, 0] = [[0.5, 0.5], [0.5, 0.5]]
    # pixel (1,1): 0.8/0.2 and 0.4/0.6
    probs[:, 0, :, 1, 1] = [[0.8, 0.2], [0.4, 0.6]]
    return probs


def test_tiny_case_hand_computed() -> None:
    maps = pixel_maps(_tiny())
    h6 = _h(0.6, 0.4)
    expected_entropy = [[0.0, LN2], [LN2, h6]]
    expected_bald = [[0.0, LN2], [0.0, h6 - (_h(0.8, 0.2) + _h(0.4, 0.6)) / 2]]
    expected_variance = [[0.0, 0.25], [0.0, 0.04]]
    expected_max = [[1.0, 0.5], [0.5, 0.6]]
    np.testing.assert_allclose(maps.entropy[0], expected_entropy, atol=1e-12)
    np.testing.assert_allclose(maps.bald[0], expected_bald, atol=1e-12)
    np.testing.assert_allclose(maps.variance[0], expected_variance, atol=1e-12)
    np.testing.assert_allclose(maps.max_softmax[0], expected_max, atol=1e-12)
    assert maps.predicted[0].tolist() == [[0, 0], [0, 0]]  # ties -> class 0
    assert maps.entropy.dtype == np.float64 and maps.entropy.shape == (1, 2, 2)
    assert maps.bald[0, 0, 0] == 0.0 and maps.bald[0, 1, 0] == 0.0  # exactly 0 on agreement
    assert abs(maps.bald[0, 1, 1] - 0.0863) < 1e-4


def test_maps_equal_classification_scores_per_pixel() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=(4, 2, 5, 6)).transpose(0, 1, 4, 2, 3)  # [T, N, C, H, W]
    maps = pixel_maps(probs)
    as_samples = np.moveaxis(probs, 2, -1).reshape(4, -1, 3)
    np.testing.assert_allclose(maps.entropy.ravel(), predictive_entropy(as_samples), rtol=1e-12)
    np.testing.assert_allclose(maps.bald.ravel(), bald(as_samples), rtol=1e-10, atol=1e-15)


def test_aggregations_hand_computed() -> None:
    entropy = pixel_maps(_tiny()).entropy
    h6 = _h(0.6, 0.4)
    assert aggregate(entropy, "mean")[0] == pytest.approx((2 * LN2 + h6) / 4)
    assert aggregate(entropy, "max")[0] == pytest.approx(LN2)
    assert aggregate(entropy, "top_q", q=0.5)[0] == pytest.approx(LN2)  # 2 of 4 pixels
    assert aggregate(entropy, "top_q", q=0.75)[0] == pytest.approx((2 * LN2 + h6) / 3)
    assert aggregate(entropy, "top_q", q=0.01)[0] == pytest.approx(LN2)  # at least one pixel
    assert aggregate(entropy, "top_q", q=1.0)[0] == pytest.approx(aggregate(entropy, "mean")[0])

    u = np.array([[[1.0, 2.0], [3.0, 4.0]]])
    pred = np.array([[[0, 0], [0, 1]]])
    # default: mean over present classes of their mean -> (2 + 4) / 2
    assert aggregate(u, "class_weighted", predicted=pred)[0] == pytest.approx(3.0)
    # given weights [1, 2]: (1 + 2 + 3 + 2*4) / (1 + 1 + 1 + 2)
    assert aggregate(u, "class_weighted", predicted=pred, class_weights=[1, 2])[0] == pytest.approx(2.8)


def test_ignore_mask() -> None:
    u = np.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 5.0], [5.0, 5.0]]])
    pred = np.array([[[0, 0], [0, 1]], [[0, 0], [0, 0]]])
    ignore = np.zeros_like(u, dtype=bool)
    ignore[0, 1, 1] = True
    ignore[1] = True  # all ignored -> 0
    assert aggregate(u, "mean", ignore=ignore).tolist() == pytest.approx([2.0, 0.0])
    assert aggregate(u, "max", ignore=ignore).tolist() == pytest.approx([3.0, 0.0])
    assert aggregate(u, "top_q", q=0.5, ignore=ignore).tolist() == pytest.approx([2.5, 0.0])  # top ceil(1.5)=2 of 1,2,3
    ignore[0, 1, 1] = False
    ignore[0, 0, 0] = True
    assert aggregate(u, "class_weighted", predicted=pred, ignore=ignore).tolist() == pytest.approx([3.25, 0.0])
    summary = summarize_map(u[0], q=0.25, ignore=ignore[0])
    assert (summary.mean, summary.max, summary.top_q_mean) == pytest.approx((3.0, 4.0, 4.0))


def test_chunked_equals_unchunked() -> None:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), size=(5, 7, 4, 5)).transpose(0, 1, 4, 2, 3).astype(np.float32)
    whole = pixel_maps(probs, chunk_size=100)
    small = pixel_maps(probs, chunk_size=2)
    streamed = list(stream_pixel_maps(probs[:, s : s + 3] for s in range(0, 7, 3)))
    for name in ("entropy", "bald", "variance", "max_softmax", "predicted"):
        np.testing.assert_array_equal(whole.get(name), small.get(name))
        np.testing.assert_array_equal(whole.get(name), np.concatenate([m.get(name) for m in streamed]))
    for how in ("mean", "max", "top_q", "class_weighted"):
        full = aggregate(whole.entropy, how, predicted=whole.predicted)
        parts = np.concatenate([aggregate(m.entropy, how, predicted=m.predicted) for m in streamed])
        np.testing.assert_array_equal(full, parts)


def _peak_bytes(n_chunks: int) -> int:
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(8, 4, 3, 32, 32)).astype(np.float32)
    chunk = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)

    def chunks():
        for _ in range(n_chunks):
            yield chunk.copy()

    tracemalloc.start()
    scores = [aggregate(m.entropy, "top_q") for m in stream_pixel_maps(chunks(), chunk_size=2)]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(np.concatenate(scores)) == 4 * n_chunks
    return peak


def test_peak_memory_flat_as_pool_grows() -> None:
    chunk_bytes = 8 * 4 * 3 * 32 * 32 * 4
    small, large = _peak_bytes(3), _peak_bytes(30)
    # 30 chunks hold 10x the pool; peak stays that of a few chunks, not of the pool.
    assert large < 1.5 * small + 64 * 1024
    assert large < 10 * chunk_bytes


def test_invalid_inputs_named() -> None:
    with pytest.raises(InvalidProbabilitiesError, match=r"\[T, N, C, H, W\]"):
        pixel_maps(np.ones((2, 2, 2)))
    bad = _tiny()
    bad[0, 0, 0, 0, 0] = 2.0
    with pytest.raises(InvalidProbabilitiesError, match="outside"):
        pixel_maps(bad)
    bad[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(InvalidProbabilitiesError, match="1 NaN"):
        pixel_maps(bad)
    bad[0, 0, 0, 0, 0] = 0.5  # this pixel now sums to 0.5 over classes
    with pytest.raises(InvalidProbabilitiesError, match="1 of 8 pixels"):
        pixel_maps(bad)
    with pytest.raises(InvalidProbabilitiesError, match="C >= 2"):
        pixel_maps(np.ones((2, 1, 1, 2, 2)))
    # float noise is clipped and renormalised; the caller's array is left as it was
    noisy = _tiny()
    noisy[0, 0, 0, 0, 0] = 1.0 + 5e-7
    before = noisy.copy()
    assert pixel_maps(noisy).entropy[0, 0, 0] == 0.0
    np.testing.assert_array_equal(noisy, before)
    with pytest.raises(ValueError, match="aggregation"):
        aggregate(np.zeros((1, 2, 2)), "median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="predicted"):
        aggregate(np.zeros((1, 2, 2)), "class_weighted")
    with pytest.raises(InvalidArrayError, match="ignore"):
        aggregate(np.zeros((1, 2, 2)), "mean", ignore=np.zeros((1, 3, 3), dtype=bool))
    with pytest.raises(ValueError, match="q"):
        aggregate(np.zeros((1, 2, 2)), "top_q", q=0.0)
