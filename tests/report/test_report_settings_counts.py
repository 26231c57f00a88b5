"""The report's figures add up with ``activelabel status``: a round that held labels out for
calibration says what its model trained on and what was held out, the Settings table shows
``calibrate`` only where a round had the labels it needs (with that threshold in words, for
classification and segmentation), and a campaign page speaks of labels, not seeds."""

from __future__ import annotations

from activelabel.campaign import CampaignConfig
from activelabel.campaign.summary import kind_cells, trained_on_words
from activelabel.report.build import labels_to_target_rows, settings_rows
from activelabel.report.data import CampaignRecord, RoundRow
from activelabel.report.segmentation import settings_rows as segmentation_settings_rows
from activelabel.report.settings import campaign_settings_rows
from activelabel.report.uncertainty import _waiting_clause

ON_CLASSIFICATION = "on: 15 % of the labels held out to fit a temperature, from 500 labels"
ON_SEGMENTATION = "on: 15 % of the images held out to fit a temperature, from 20 labeled images"
TRAINING = {"epochs": 1, "steps": 200, "batch_size": 32, "trained_on": 425, "held_out": 75, "members": 1}


def _row(index: int, labeled: int, training: dict | None = None, accuracy: float | None = 0.9,
         segmentation: dict | None = None) -> RoundRow:
    return RoundRow(index, "active", labeled, accuracy, 0.3, 0.05, {}, training=training, segmentation=segmentation)


def _classification(most_labeled: int | None, **changes) -> dict[str, str]:
    config = CampaignConfig(name="digits", **changes)
    return dict(campaign_settings_rows(config.strategy, ["0", "1"], config.to_dict(), most_labeled))


def test_calibrate_is_shown_only_where_a_round_had_the_labels_it_needs() -> None:
    assert "calibrate" not in _classification(120)  # far below 500: calibration never runs
    assert "calibrate" not in _classification(499)
    assert _classification(500)["calibrate"] == ON_CLASSIFICATION
    assert _classification(500, calibrate=False)["calibrate"] == (
        "off: every label trains, no temperature fitted (from 500 labels it would be)")
    # an experiment page: the most labels any of its rounds had
    shared = CampaignConfig(name="digits").to_dict()
    assert "calibrate" not in dict(settings_rows({"strategies": ["bald"], "seeds": [0], "campaign": shared}, 40))
    assert dict(settings_rows({"strategies": ["bald"], "seeds": [0], "campaign": shared}, 505))["calibrate"] == (
        ON_CLASSIFICATION)


def test_a_segmentation_page_shows_calibrate_from_20_labeled_images() -> None:
    config = CampaignConfig(name="seg", task="segmentation", dataset="shapes?n=60&size=32", labels=("bg", "disc"))

    def rows(*labeled: int) -> dict[str, str]:
        record = CampaignRecord("seg", config.strategy, 0, ["bg", "disc"], config.to_dict(),
                                [_row(i, n) for i, n in enumerate(labeled, start=1)], task="segmentation")
        return dict(segmentation_settings_rows(record))

    assert "calibrate" not in rows(8, 14)
    assert rows(14, 24)["calibrate"] == ON_SEGMENTATION


def test_a_round_with_a_calibration_hold_out_says_what_it_trained_on_everywhere() -> None:
    row = _row(2, 500, TRAINING)
    assert (row.learned_from, row.held_out) == (425, 75)
    assert row.trained_on_cell() == "425 (75 held out)"  # the report's rounds table ...
    assert kind_cells("active", 425, 75) == ("active", "425 (75 held out)")  # ... is status' "trained on" column
    assert row.trained_on_clause() == "trained on 425 labels (75 held out for calibration)"  # the report's headline
    assert _row(1, 495, {**TRAINING, "trained_on": 495, "held_out": 0}).trained_on_cell() == "495"
    assert _row(1, 495).trained_on_cell() == "495"  # stored before round.training: labeled stands for it
    assert _row(1, 495).trained_on_clause() == "trained on 495 labels"
    # a cold-start round stores the labels so far (8), but trains no model: empty, as in status
    cold = RoundRow(2, "cold_start", 8, None, None, None, {})
    assert cold.trained_on_cell() == "" and kind_cells("cold_start", 8) == ("cold start", "")
    assert cold.trained_on_clause() == "no model trained"
    assert trained_on_words(425, 75) == "trained on 425 labels (75 held out for calibration)"  # the run's log
    assert trained_on_words(17, 3, "mask") == "trained on 17 masks (3 held out for calibration)"
    waiting = CampaignRecord("digits", "bald", 0, ["0", "1"], {}, [], waiting=RoundRow(
        3, "active", 500, 0.91, None, None, {}, training=TRAINING))
    assert _waiting_clause(waiting) == (
        "round 3 (active), waiting for labels, trained on 425 labels (75 held out for calibration), measured "
        "test accuracy 0.9100 (not in the curves until the round completes)")


def test_a_campaign_page_reads_labels_to_target_without_seeds() -> None:
    record = CampaignRecord("digits", "bald", 0, ["0", "1"], {}, [_row(1, 20, accuracy=0.5), _row(2, 40, accuracy=0.8)])
    assert labels_to_target_rows({"bald": [record]}, [0.7, 0.9], per_seed=False) == [["bald", "40", "not reached"]]
    assert labels_to_target_rows({"bald": [record]}, [0.7]) == [["bald", "40 (seeds: 40)"]]  # an experiment's


def test_the_campaign_report_agrees_with_status_on_the_held_out_round(campaign_report) -> None:
    """tiny-random-seed1: round 1 has 495 labels (none held out), round 2 has 500, 75 held out."""
    out, parser = campaign_report
    text = " ".join(out.read_text(encoding="utf-8").split())
    assert parser.tables["rounds"][0][2] == "trained on"
    assert [row[2] for row in parser.tables["rounds"][1:]] == ["495", "425 (75 held out)"]
    assert "Latest complete round: 2 (active) · trained on 425 labels (75 held out for calibration)" in text
    settings = {row[0]: row[1] for row in parser.tables["settings"][1:]}
    assert settings["calibrate"] == ON_CLASSIFICATION
    assert all("seeds" not in cell for row in parser.tables["labels-to-target"] for cell in row)


def test_gallery_scores_keep_small_values_readable() -> None:
    """Trial F7b: a BALD of 0.0004 read "0.000"; three significant digits keep it."""
    from activelabel.report.html import score_words

    assert score_words(0.0004) == "0.0004"
    assert score_words(0.000412345) == "0.000412"
    assert score_words(0.1234) == "0.123"
    assert score_words(1.2345) == "1.23"
    assert score_words(0.0) == "0"


def test_gallery_scores_just_below_one_keep_their_ranking() -> None:
    """Trial 17 F7: margin scores of near-ties (1 - (p1 - p2)) all read "1"."""
    from activelabel.report.html import score_words

    near_ties = [0.99987, 0.99912, 0.9931, 0.999996]
    assert [score_words(v) for v in near_ties] == ["0.99987", "0.99912", "0.9931", "0.999996"]
    assert score_words(0.985) == "0.985" and score_words(1.0) == "1"
