"""Per-pixel temperature scaling on hand-made logits whose over-confidence is known.

The logits of a well-calibrated model are drawn first (labels sampled from their softmax, so
T = 1 is right for them); multiplying them by 3 gives a model three times too sharp, whose
right temperature is 3 (Guo et al. 2017).
"""

from __future__ import annotations

import numpy as np
import pytest

from activelabel.campaign.calibrate import cross_validated_nll
from activelabel.errors import InvalidArrayError
from activelabel.pipeline.calibration import calibration_report, fit_temperature, predictive_probabilities
from activelabel.pipeline.pixel_calibration import image_folds, pixel_rows

IMAGES, C, H, W = 12, 4, 16, 16
IGNORE = 255


def calibrated_set(seed: int = 0, scale: float = 3.0):
    """(logits [IMAGES, C, H, W] scaled by ``scale``, masks [IMAGES, H, W] with some ignored
    pixels): masks drawn from softmax of the unscaled logits."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, size=(IMAGES, C, H, W))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    u = rng.random((IMAGES, 1, H, W))
    masks = (p.cumsum(axis=1) < u).sum(axis=1).astype(np.int64)
    masks = np.minimum(masks, C - 1)
    masks[:, :2, :] = IGNORE  # two ignored rows per image
    return z * scale, masks


def test_a_threefold_over_confidence_gets_a_temperature_near_3_and_nll_and_ece_drop() -> None:
    logits, masks = calibrated_set()
    z, y, image = pixel_rows(logits, masks, ignore_index=IGNORE)
    assert z.shape == (1, IMAGES * (H - 2) * W, C) and y.shape == image.shape == (IMAGES * (H - 2) * W,)
    t = fit_temperature(z, y)
    assert t == pytest.approx(3.0, abs=0.25)
    before = calibration_report(predictive_probabilities(z, 1.0), y)
    after = calibration_report(predictive_probabilities(z, t), y)
    assert after.nll < before.nll - 0.1
    assert before.ece > 0.1 and after.ece < 0.03
    assert after.accuracy == before.accuracy  # one pass: T moves no argmax


def test_folds_split_by_image_and_the_guard_keeps_the_temperature() -> None:
    logits, masks = calibrated_set(seed=1)
    z, y, image = pixel_rows(logits, masks, ignore_index=IGNORE)
    wrong = predictive_probabilities(z).argmax(-1) != y
    fold = image_folds(image, wrong, seed=0, folds=5)
    for i in range(IMAGES):
        assert len(set(fold[image == i].tolist())) == 1  # no image in two folds
    sizes = np.bincount([fold[image == i][0] for i in range(IMAGES)], minlength=5)
    assert sizes.max() - sizes.min() <= 1 and sizes.min() >= 2  # 12 images: 3, 3, 2, 2, 2
    assert np.array_equal(fold, image_folds(image, wrong, seed=0, folds=5))  # seeded
    check = cross_validated_nll(z, y, wrong, fit=fit_temperature, fold=fold)
    assert check["out_of_fold_nll"] < check["nll_at_1"] - 0.1
    assert all(t == pytest.approx(3.0, abs=0.4) for t in check["fold_temperatures"])
    with pytest.raises(InvalidArrayError, match="needs at least 5 images"):
        image_folds(image[image < 4], wrong[image < 4], seed=0, folds=5)


def test_the_guard_refuses_a_temperature_on_well_calibrated_pixels() -> None:
    logits, masks = calibrated_set(seed=2, scale=1.0)
    z, y, image = pixel_rows(logits, masks, ignore_index=IGNORE)
    wrong = predictive_probabilities(z).argmax(-1) != y
    check = cross_validated_nll(z, y, wrong, fit=fit_temperature, fold=image_folds(image, wrong, 0, 5))
    assert fit_temperature(z, y) == pytest.approx(1.0, abs=0.15)
    assert check["out_of_fold_nll"] >= check["nll_at_1"] - 0.005  # nothing to gain out of fold


def test_ignored_pixels_never_count() -> None:
    logits, masks = calibrated_set(seed=3)
    z, y, _ = pixel_rows(logits, masks, ignore_index=IGNORE)
    garbage = logits.copy()
    garbage[:, :, :2, :] = np.random.default_rng(9).normal(0, 50, size=garbage[:, :, :2, :].shape)
    z2, y2, _ = pixel_rows(garbage, masks, ignore_index=IGNORE)
    assert IGNORE not in y and np.array_equal(y, y2) and np.array_equal(z, z2)
    assert fit_temperature(z2, y2) == fit_temperature(z, y)
    everything = masks.copy()
    everything[0] = IGNORE
    _, y3, image3 = pixel_rows(logits, everything, ignore_index=IGNORE)
    assert 0 not in image3 and len(y3) == (IMAGES - 1) * (H - 2) * W


def test_a_per_image_subsample_is_seeded_and_does_not_depend_on_chunking() -> None:
    logits, masks = calibrated_set(seed=4)
    passes = np.stack([logits, logits + 0.5])  # [S=2, b, C, H, W]
    whole = pixel_rows(passes, masks, ignore_index=IGNORE, per_image=50, seed=7)
    halves = [pixel_rows(passes[:, s:s + 5], masks[s:s + 5], ignore_index=IGNORE, per_image=50, seed=7,
                         first_image=s) for s in range(0, IMAGES, 5)]
    assert whole[0].shape == (2, IMAGES * 50, C)
    assert np.array_equal(whole[0], np.concatenate([h[0] for h in halves], axis=1))
    assert np.array_equal(whole[2], np.concatenate([h[2] for h in halves]))
    assert np.bincount(whole[2]).tolist() == [50] * IMAGES
    other = pixel_rows(passes, masks, ignore_index=IGNORE, per_image=50, seed=8)
    assert not np.array_equal(whole[1], other[1])
    with pytest.raises(InvalidArrayError, match="outside 0..3"):
        bad = masks.copy()
        bad[0, 5, 5] = 7
        pixel_rows(logits, bad, ignore_index=IGNORE)
