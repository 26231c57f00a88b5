"""A round's model at or below chance is said as a warning (trial 12: `evaluation accuracy 0.000`
in two rounds and nothing said it)."""

from __future__ import annotations

import numpy as np
import pytest

from activelabel.campaign.chance import chance_accuracy, chance_advice, chance_clause, no_better_than_chance

DIGITS = [str(d) for d in range(10)]


def test_chance_is_the_most_common_labels_share_and_never_below_one_over_the_classes():
    assert chance_accuracy(np.array([0, 0, 0, 1, 2, 3, 4, 5, 6, 7]), 10) == (pytest.approx(0.3), 0)
    assert chance_accuracy(np.array([3, 1, 2, 0]), 10) == (pytest.approx(0.25), 0)  # a tie: the first class
    assert chance_accuracy(np.arange(20) % 10, 10) == (pytest.approx(0.1), 0)


def test_the_trial_model_at_zero_accuracy_is_named_with_the_chance_level_and_what_to_check():
    targets = np.arange(10) % 10  # the trial's 10 evaluation samples, one per digit
    said = no_better_than_chance(0.0, targets, DIGITS)
    assert said is not None
    assert said.startswith("that is no better than chance (0.100: always answering '0' on these 10 samples)")
    assert "pick no better than random" in said and "activelabel status CAMPAIGN --round N" in said
    assert "fixed_epochs" in said


def test_a_rounds_advice_names_its_campaign_and_round_and_fixed_epochs_only_when_set():
    """trial 18 F14: a compare's warning said `activelabel status --round N` without naming which
    of four campaigns, and "drop fixed_epochs" to a user who had not set it."""
    assert chance_advice("t18-random-seed1", 1, fixed_epochs=False) == (
        "its uncertainty scores pick no better than random; check the labels (`activelabel status "
        "t18-random-seed1 --round 1`), and train longer (more epochs)")
    assert "(`activelabel status 'my pets' --round 3`)" in chance_advice("my pets", 3)  # runnable as it stands
    assert chance_advice("c", 2, fixed_epochs=True).endswith("(more epochs, or drop fixed_epochs)")
    targets = np.arange(10) % 10
    said = no_better_than_chance(0.0, targets, DIGITS, advice=chance_advice("c", 2, fixed_epochs=False))
    assert said.endswith("check the labels (`activelabel status c --round 2`), and train longer (more epochs)")


def test_at_chance_is_said_and_above_it_is_not():
    targets = np.array([1] * 6 + [0] * 4)
    assert no_better_than_chance(0.6, targets, ["cat", "dog"]) is not None  # = always 'dog'
    assert "always answering 'dog'" in no_better_than_chance(0.6, targets, ["cat", "dog"])
    assert no_better_than_chance(0.7, targets, ["cat", "dog"]) is None


def test_fewer_measured_samples_than_classes_says_nothing():
    assert no_better_than_chance(0.0, np.array([1, 2, 3]), DIGITS) is None
    assert no_better_than_chance(0.0, np.array([], dtype=np.int64), DIGITS) is None


def test_a_segmentation_model_below_all_background_is_said_per_labeled_pixel():
    """trial 13 F5: pixel accuracy 0.326 where painting everything background scores about 0.8."""
    masks = np.zeros((3, 4, 4), dtype=np.int64)
    masks[:, 0, :2] = 1  # a circle's pixels
    masks[:, 3, 3] = 2  # a square's
    masks[0, 1, 1] = 255  # unlabeled: not measured
    labeled = masks[masks != 255]
    said = no_better_than_chance(0.326, labeled, ["background", "circle", "square"], unit="labeled pixels")
    assert said is not None and said.startswith(
        "that is no better than chance (0.809: always answering 'background' on these 47 labeled pixels)")
    assert no_better_than_chance(0.92, labeled, ["background", "circle", "square"], unit="labeled pixels") is None
    assert chance_clause(0.326, labeled, ["background", "circle", "square"], "labeled pixels", "pixel accuracy") == (
        "pixel accuracy 0.326 is no better than chance (0.809: always answering 'background' on these 47 labeled "
        "pixels)")
    assert chance_clause(0.92, labeled, ["background", "circle", "square"], "labeled pixels", "pixel accuracy") is None


def test_a_segmentation_round_at_chance_leads_with_the_pixel_accuracy_it_compares():
    """trial 15 F5: "mIoU 0.414 (pixel accuracy 0.759, pixel ECE 0.187): that is no better than chance
    (0.846 ...)" compared pixel accuracy with 0.846, but a reader compared the mIoU."""
    from activelabel.campaign.segmentation_round import trained_line

    targets = np.array([0] * 5168 + [1] * 941)  # the trial's 6,109 labeled pixels, 84.6 % background
    chance = chance_clause(0.759, targets, ["background", "thing"], "labeled pixels", "pixel accuracy")
    line = trained_line("Round 3: trained a unet_small on 6 masks", 0.414, 0.759, 0.187, "", chance)
    assert line == (
        "Round 3: trained a unet_small on 6 masks: pixel accuracy 0.759 is no better than chance (0.846: always "
        "answering 'background' on these 6,109 labeled pixels); mIoU 0.414, pixel ECE 0.187; so its uncertainty "
        "scores pick no better than random; check the labels (`activelabel status CAMPAIGN --round N`), and train longer "
        "(more epochs, or drop fixed_epochs)")
    assert trained_line("Round 3: trained a unet_small on 6 masks", 0.614, 0.9, 0.05, "; temperature 1.2", None) == (
        "Round 3: trained a unet_small on 6 masks, mIoU 0.614 (pixel accuracy 0.900, pixel ECE 0.050); temperature 1.2")
