"""What `activelabel status --round N` and `activelabel report` say at the edges: why a round has
no calibration (the report's words), and targets that are not fractions refused up front."""

from __future__ import annotations

import math

import pytest
from conftest import SEGMENTATION_CAMPAIGN
from report_tiny import INITIAL, run_cli

from activelabel.errors import ConfigError
from activelabel.report.build import check_targets


def _status(exp, campaign: str, index: int) -> str:
    result = run_cli("status", campaign, "--round", str(index), "--database-url", exp.url, cwd=exp.folder)
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())  # rich wraps long lines


def test_status_says_why_a_round_below_500_labels_has_no_calibration(tiny_experiment) -> None:
    labeled, calibration = tiny_experiment.query(
        "SELECT r.labeled_count, r.calibration FROM round r JOIN campaign c ON c.id = r.campaign_id "
        "WHERE c.name = 'tiny-entropy-seed1' AND r.\"index\" = 1")[0]
    assert labeled == INITIAL < 500 and calibration in (None, "null")  # JSON null
    said = _status(tiny_experiment, "tiny-entropy-seed1", 1)
    assert ("Calibration: none this round — fewer than 500 labels (temperature scaling starts at 500, holding 15% "
            "of them out of training to fit T).") in said
    # round 2 (500 labels) stored its calibration: its table, and no "none this round"
    said = _status(tiny_experiment, "tiny-entropy-seed1", 2)
    # (titled by the predictor T was fitted for: the mean of the round's MC-dropout passes)
    assert "Calibration: none this round" not in said
    assert "Calibration of the mean of 2 MC-dropout passes · temperature" in " ".join(said.split())


def test_status_says_a_segmentation_round_fits_no_temperature(segmentation_campaign) -> None:
    said = _status(segmentation_campaign, SEGMENTATION_CAMPAIGN, 2)
    assert ("Calibration: none this round — segmentation campaigns fit no temperature (calibrate is ignored); the "
            "pixel ECE is the uncalibrated model's.") in said
    assert "fewer than 500" not in said


@pytest.mark.parametrize(("target", "hint"), [
    ("1.5", ""), ("90", "; for 90 % give --target 0.9"), ("0", ""), ("-0.2", ""),
])
def test_report_refuses_a_target_outside_0_1(tiny_experiment, tmp_path, target, hint) -> None:
    out = tmp_path / "r.html"
    result = run_cli("report", "tiny", "--out", str(out), "--target", "0.9", "--target", target,
                     "--database-url", tiny_experiment.url, cwd=tiny_experiment.folder)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert (f"error: --target {float(target):g} is not a test accuracy (or mIoU): give a fraction in (0, 1], e.g. "
            f"--target 0.9 for 90 %{hint}") in message
    assert not out.exists()


def test_targets_in_0_1_pass_and_others_raise() -> None:
    check_targets(None)
    check_targets([1e-9, 0.5, 1.0])
    for bad in (0.0, 1.0000001, math.nan, math.inf, -1.0):
        with pytest.raises(ConfigError, match="is not a test accuracy"):
            check_targets([0.9, bad])


def test_counts_in_messages_take_the_right_number() -> None:
    from activelabel.cli_compare import _count

    assert [_count(n, "campaign") for n in (0, 1, 2)] == ["0 campaigns", "1 campaign", "2 campaigns"]
    assert [_count(n, "strateg", "y", "ies") for n in (1, 5)] == ["1 strategy", "5 strategies"]
