"""Brush codec (offline) and per-pixel majority / agreement of annotators' masks."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from activelabel.annotation.brush import BrushResultError, build_brush_config, mask_to_results, results_to_mask
from activelabel.annotation.mask_votes import majority_mask, mean_pairwise_iou, pair_iou
from activelabel.errors import InvalidArrayError
from activelabel.pipeline.shapes import SHAPE_CLASSES, make_shapes

LABELS = list(SHAPE_CLASSES)


def test_config_has_brushes_for_painted_classes_and_heatmap() -> None:
    root = ET.fromstring(build_brush_config(["background", "cat & dog", "line"]))
    brush = root.find(".//BrushLabels")
    assert brush is not None and brush.get("name") == "mask" and brush.get("toName") == "image"
    assert [label.get("value") for label in brush.iter("Label")] == ["cat & dog", "line"]
    assert sorted(i.get("value") for i in root.iter("Image")) == ["$heatmap", "$image"]
    plain = ET.fromstring(build_brush_config(["bg", "fg"], heatmap=False))
    assert [i.get("name") for i in plain.iter("Image")] == ["image"]


def test_round_trip_offline_pixel_for_pixel() -> None:
    masks = make_shapes(3, seed=2).masks
    for mask in masks:
        results = mask_to_results(mask, LABELS)
        assert {r["value"]["brushlabels"][0] for r in results} == {LABELS[c] for c in np.unique(mask) if c}
        assert all(r["original_width"] == 64 and r["type"] == "brushlabels" for r in results)
        np.testing.assert_array_equal(results_to_mask(results, LABELS, height=64, width=64), mask)
    # ignore_index pixels stay unpainted -> background after decoding
    mask = masks[0].copy()
    mask[:5] = 255
    expected = mask.copy()
    expected[:5] = 0
    np.testing.assert_array_equal(results_to_mask(mask_to_results(mask, LABELS), LABELS, height=64, width=64), expected)


def test_enlarged_display_reduced_by_block_majority() -> None:
    mask = make_shapes(1, seed=0, size=32).masks[0]
    results = mask_to_results(mask, LABELS, scale=4)
    assert results[0]["original_width"] == 128 and results[0]["original_height"] == 128
    np.testing.assert_array_equal(results_to_mask(results, LABELS, height=32, width=32), mask)
    # a 2x2 block with 3 painted pixels of class 1 and one unpainted becomes class 1
    painted = np.zeros((4, 4), dtype=np.int64)
    painted[0, 0] = painted[0, 1] = painted[1, 0] = 1
    painted[2, 2] = 2  # one of four: block stays 0
    painted[2:, :2] = [[1, 2], [2, 1]]  # tie 2-2 -> lower class index 1
    out = results_to_mask(mask_to_results(painted, LABELS), LABELS, height=2, width=2)
    assert out.tolist() == [[1, 0], [1, 0]]


def test_a_served_image_of_any_size_keeps_the_painted_mask_and_trains_on_it_resized() -> None:
    from activelabel.pipeline.masks import resize_mask

    # A user's own 50 x 37 image served at its natural size; the model trains at 16 x 16.
    mask = make_shapes(1, seed=3, size=16).masks[0]
    results = mask_to_results(mask, LABELS, size=(37, 50))
    assert {(r["original_height"], r["original_width"]) for r in results} == {(37, 50)}
    kept = results_to_mask(results, LABELS, height=16, width=16, keep_size=True)
    assert kept.shape == (37, 50)  # the annotators' work at the size they painted it
    # An accepted pre-annotation trains as the predicted mask it was (nearest there and back).
    np.testing.assert_array_equal(resize_mask(kept, 16), mask)
    # A mask painted at 37 x 50: each training pixel takes the painted pixel under its centre,
    # as resize_mask does to the campaign's own mask files.
    painted = np.zeros((37, 50), dtype=np.int64)
    painted[:19, 25:] = 2  # the top-right quarter, rounded as pixel centres fall
    kept = results_to_mask(mask_to_results(painted, LABELS), LABELS, height=16, width=16, keep_size=True)
    np.testing.assert_array_equal(kept, painted)
    out = resize_mask(kept, 16)
    rows = np.minimum((np.arange(16) + 0.5) * 37 / 16, 36).astype(int)
    cols = np.minimum((np.arange(16) + 0.5) * 50 / 16, 49).astype(int)
    np.testing.assert_array_equal(out, painted[rows[:, None], cols[None, :]])
    assert out[:8, 8:].tolist() == [[2] * 8] * 8 and not out[8:].any() and not out[:, :8].any()
    # nothing painted: an empty mask of the training size
    assert results_to_mask([], LABELS, height=16, width=16, keep_size=True).shape == (16, 16)
    # an embedded image's codec still refuses a size the enlarged image cannot have
    with pytest.raises(BrushResultError, match="brush painted at 50x37 pixels, not a whole multiple of the 16x16"):
        results_to_mask(results, LABELS, height=16, width=16)


def test_decode_errors_name_the_problem() -> None:
    results = mask_to_results(np.array([[0, 1], [1, 0]]), LABELS)
    bad_label = [dict(results[0], value=dict(results[0]["value"], brushlabels=["unicorn"]))]
    with pytest.raises(BrushResultError, match=r"task 7.*unicorn"):
        results_to_mask(bad_label, LABELS, height=2, width=2, where="task 7")
    with pytest.raises(BrushResultError, match="not a whole multiple"):
        results_to_mask(results, LABELS, height=3, width=3)
    short = [dict(results[0], original_width=3)]
    with pytest.raises(BrushResultError, match="expected 2x3x4"):
        results_to_mask(short, LABELS, height=2, width=3)
    with pytest.raises(BrushResultError, match=r"\[9\]"):
        mask_to_results(np.array([[9]]), LABELS)
    # other controls are skipped
    other = [{"from_name": "label", "type": "choices", "value": {"choices": ["x"]}}]
    assert results_to_mask(other, LABELS, height=2, width=2).tolist() == [[0, 0], [0, 0]]


def test_majority_and_agreement_hand_computed() -> None:
    a = np.array([[0, 1], [2, 2]])
    b = np.array([[0, 1], [1, 255]])
    c = np.array([[0, 2], [1, 255]])
    assert majority_mask([a, b, c], 3).tolist() == [[0, 1], [1, 2]]
    # tie (one vote each) and nobody labeled -> ignore
    assert majority_mask([a, np.array([[1, 1], [1, 255]])], 3).tolist() == [[255, 1], [255, 2]]
    assert majority_mask([np.full((2, 2), 255)], 3).tolist() == [[255, 255], [255, 255]]
    # a vs b on pixels both labeled (3 pixels): class 0 IoU 1, class 1 IoU 1/2, class 2 IoU 0 -> 1/2
    assert pair_iou(a, b, 3) == pytest.approx(0.5)
    # b vs c: class 0 -> 1, 1 -> 1/2, 2 -> 0 -> 1/2 ; a vs c: 0 -> 1, 1 -> 0, 2 -> 0 -> 1/3
    assert mean_pairwise_iou([a, b, c], 3) == pytest.approx((0.5 + 0.5 + 1 / 3) / 3)
    assert mean_pairwise_iou([a, a], 3) == 1.0
    assert math.isnan(mean_pairwise_iou([a], 3))
    with pytest.raises(InvalidArrayError, match="one size"):
        majority_mask([a, np.zeros((3, 3))], 3)
    with pytest.raises(InvalidArrayError, match="0..2"):
        majority_mask([np.array([[7]])], 3)
