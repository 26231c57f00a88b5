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
    said = " ".join(said.split())  # a refused fit reads "· no temperature kept (T = 1; ...)"
    assert ("Calibration of the mean of 2 MC-dropout passes · temperature" in said
            or "Calibration of the mean of 2 MC-dropout passes · no temperature kept (T = 1;" in said)


def test_status_says_why_a_segmentation_round_fits_no_temperature(segmentation_campaign) -> None:
    said = " ".join(_status(segmentation_campaign, SEGMENTATION_CAMPAIGN, 2).split())
    assert ("Calibration: none this round — fewer than 20 labeled images (a segmentation round fits a per-pixel "
            "temperature from 20 on, holding 15% of them, at least 5, out of training); the pixel ECE is the "
            "uncalibrated model's.") in said
    assert "fewer than 500" not in said


@pytest.mark.parametrize(("target", "hint"), [
    ("1.5", ", e.g. --target 0.9 for 90 %"), ("90", "; for 90 % give --target 0.9"),
    ("0", ", e.g. --target 0.9 for 90 %"), ("-0.2", ", e.g. --target 0.9 for 90 %"),
])
def test_report_refuses_a_target_outside_0_1(tiny_experiment, tmp_path, target, hint) -> None:
    out = tmp_path / "r.html"
    result = run_cli("report", "tiny", "--out", str(out), "--target", "0.9", "--target", target,
                     "--database-url", tiny_experiment.url, cwd=tiny_experiment.folder)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert (f"error: --target {float(target):g} is not a test accuracy (or mIoU): give a fraction in (0, 1]"
            f"{hint}") in message
    assert message.count("--target 0.9") == 1  # trial 14 F4: the hint once, not twice
    assert not out.exists()


def test_a_percentage_target_gets_one_hint() -> None:
    """Trial 14 F4: `--target 90` said "e.g. --target 0.9 for 90 %; for 90 % give --target 0.9"."""
    with pytest.raises(ConfigError) as raised:
        check_targets([90.0])
    assert str(raised.value) == ("--target 90 is not a test accuracy (or mIoU): give a fraction in (0, 1]; "
                                 "for 90 % give --target 0.9")
    with pytest.raises(ConfigError) as raised:
        check_targets([85.0])
    assert str(raised.value).endswith("(0, 1]; for 85 % give --target 0.85")


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


def test_status_round_says_how_the_pool_was_scored_in_words(tiny_experiment, segmentation_campaign) -> None:
    import json

    stored = json.loads(tiny_experiment.query(
        "SELECT r.uncertainty FROM round r JOIN campaign c ON c.id = r.campaign_id "
        "WHERE c.name = 'tiny-entropy-seed1' AND r.\"index\" = 2")[0][0])
    said = _status(tiny_experiment, "tiny-entropy-seed1", 2)
    assert f"Scoring: MC dropout, {stored['samples']} stochastic passes per sample" in said
    if "refined" in stored:
        assert (f"Refinement: the {stored['refined']['candidates']} best-scored samples were scored again with "
                f"{stored['refined']['passes']} passes each") in said
    assert "{" not in said and "}" not in said  # no Python dict anywhere
    assert "Campaign tiny-entropy-seed1 · round 2 · pool uncertainty (nats)" in said

    seg = json.loads(segmentation_campaign.query(
        "SELECT uncertainty FROM round WHERE \"index\" = 2")[0][0])
    said = _status(segmentation_campaign, SEGMENTATION_CAMPAIGN, 2)
    assert (f"Image score: the per-pixel {seg['map']} map, aggregated as the mean of its top {seg['q']:g} of "
            "pixels.") in said
    assert "{" not in said and "}" not in said and "'map'" not in said


def test_describe_scoring_renders_every_stored_setting_as_words() -> None:
    from activelabel.campaign.uncertainty_report import describe_scoring

    assert describe_scoring(None) == []
    lines = describe_scoring({
        "method": "mc_dropout", "samples": 20, "members": 1, "mode": "head_only", "temperature": 1.25,
        "refined": {"candidates": 200, "passes": 1000}, "shards": 4, "density": {"dim": 128},
        "something_new": {"a_b": 0.5, "c": [1, 2]},
    })
    assert lines == [
        "Scoring: MC dropout, 20 stochastic passes per sample (dropout in the classifier head only; the backbone "
        "runs once); logits divided by the fitted temperature T = 1.250.",
        "Refinement: the 200 best-scored samples were scored again with 1000 passes each; the batch is the top of "
        "them.",
        "Scored on Dask in 4 shards.",
        "something new: a b 0.5, c 1, 2",
    ]
    assert describe_scoring({"method": "ensemble", "samples": 5, "members": 5, "mode": "naive", "temperature": 1.0,
                             "candidates": 60}) == [
        "Scoring: an ensemble of 5 models, 5 passes per sample in all (each pass runs the whole model); no "
        "temperature (T = 1).",
        "Batch chosen jointly among the 60 best-scored candidates.",
    ]
    assert describe_scoring({"method": "deterministic", "samples": 1, "members": 1, "mode": "deterministic",
                             "temperature": 1.0, "map": "entropy", "aggregation": "mean", "q": 0.1,
                             "class_weights": [1.0, 2.5], "class_pixels": [900, 100]}) == [
        "Scoring: one deterministic pass per sample; no temperature (T = 1).",
        "Image score: the per-pixel entropy map, aggregated as mean.",
        "Class weights: 1, 2.5 (labeled pixels per class: 900, 100).",
    ]



def test_describe_scoring_says_where_the_dropout_is_for_each_kind_of_network() -> None:
    # trial 15 F9: a segmentation round said "dropout active through the network", but its U-Net's
    # only dropout sits before the 1x1 head (pipeline.segmentation_model). Classification keeps its words:
    # small_cnn and gal_cnn drop out in the conv features too (full_network), torchvision nets in the head.
    from activelabel.campaign.uncertainty_report import describe_scoring

    segmentation = {"method": "mc_dropout", "samples": 8, "members": 1, "mode": "full_network", "temperature": 1.0,
                    "map": "entropy", "aggregation": "mean", "q": 0.1}
    assert describe_scoring(segmentation)[0] == (
        "Scoring: MC dropout, 8 stochastic passes per sample (dropout before the 1x1 head only; the trunk runs once "
        "per image); no temperature (T = 1).")
    ensemble = segmentation | {"method": "ensemble+mc_dropout", "samples": 16, "members": 2}
    assert describe_scoring(ensemble)[0] == (
        "Scoring: an ensemble of 2 models, 16 passes per sample in all (MC dropout in each model) (dropout before the "
        "1x1 head only; the trunk runs once per image); no temperature (T = 1).")
    classification = {k: v for k, v in segmentation.items() if k not in ("map", "aggregation", "q")}
    assert describe_scoring(classification) == [
        "Scoring: MC dropout, 8 stochastic passes per sample (dropout active through the network); no temperature "
        "(T = 1)."]
    assert describe_scoring(classification | {"mode": "head_only"})[0] == (
        "Scoring: MC dropout, 8 stochastic passes per sample (dropout in the classifier head only; the backbone runs "
        "once); no temperature (T = 1).")


def test_the_networks_score_in_the_modes_their_words_describe() -> None:
    # The words above rest on these: the U-Net is a chain whose one dropout is its head's first layer;
    # small_cnn has dropout in its features; a torchvision net only in its classifier head.
    import torch

    from activelabel.campaign import CampaignConfig
    from activelabel.campaign.model_settings import model_spec
    from activelabel.pipeline.model import DROPOUT_TYPES, build_model
    from activelabel.pipeline.prediction import mc_strategy
    from activelabel.pipeline.segmentation_model import SegmentationSpec, build_segmentation_model

    unet = build_segmentation_model(SegmentationSpec(in_channels=1, num_classes=2, width=4))
    dropouts = [m for m in unet.modules() if isinstance(m, DROPOUT_TYPES)]
    assert dropouts == [unet.head[0]] and isinstance(unet.head[1], torch.nn.Conv2d)
    assert unet.head[1].kernel_size == (1, 1) and mc_strategy(unet, 8) == "full_network"
    small = build_model(model_spec(CampaignConfig(name="s"), 1, 10))
    assert mc_strategy(small, 8) == "full_network"
    assert any(isinstance(m, DROPOUT_TYPES) and m.p > 0 for m in small.features.modules())
    resnet = build_model(model_spec(CampaignConfig(name="r", architecture="resnet18"), 3, 10))
    assert mc_strategy(resnet, 8) == "head_only"

def test_report_takes_a_campaign_or_experiment_file_and_says_where_it_wrote(tiny_experiment, tmp_path) -> None:
    """`report campaign.toml` resolves the name and the database from the file, as `status` does;
    the same for `compare`'s experiment file. The HTML lands in the current folder and the
    message gives its absolute path."""
    (tmp_path / "campaign.toml").write_text(
        '[campaign]\nname = "tiny-random-seed1"\n\n[data]\npool = "images/"\nlabels = ["0", "1"]\n\n'
        f'[database]\nurl = "{tiny_experiment.url}"\n', encoding="utf-8")
    result = run_cli("report", "campaign.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = tmp_path / "tiny-random-seed1.html"
    assert " ".join(result.stdout.split()) == (
        f"Wrote the campaign report of 'tiny-random-seed1' (1 campaign) to {written}")
    assert written.is_absolute() and "<h1>Campaign tiny-random-seed1</h1>" in written.read_text(encoding="utf-8")

    (tmp_path / "experiment.toml").write_text(
        f'[experiment]\nname = "tiny"\ndatabase_url = "{tiny_experiment.url}"\n\n[campaign]\ndataset = "digits"\n',
        encoding="utf-8")
    result = run_cli("report", "experiment.toml", "--out", "out/e.html", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert " ".join(result.stdout.split()) == (
        f"Wrote the experiment report of 'tiny' (4 campaigns) to {tmp_path / 'out' / 'e.html'}")
    assert "<h1>Experiment tiny</h1>" in (tmp_path / "out" / "e.html").read_text(encoding="utf-8")

    # --database-url wins over the file's: an empty database has no such campaign
    other = tmp_path / "other.db"
    run_cli("db", "upgrade", "--database-url", f"sqlite:///{other}", cwd=tmp_path)
    result = run_cli("report", "campaign.toml", "--database-url", f"sqlite:///{other}", cwd=tmp_path)
    assert result.returncode == 1
    assert "no experiment or campaign named 'tiny-random-seed1'" in result.stderr


def test_compare_says_once_that_a_low_epochs_is_raised(tiny_experiment) -> None:
    """--epochs 1 on 495 initial labels (16 batches of 32 per epoch): 13 epochs reach 200 steps."""
    said = " ".join(tiny_experiment.second_stderr.split())
    assert said.count("Rounds on fewer than") == 1
    assert ("Rounds on fewer than 6,370 labels train more than epochs = 1: each round takes at least 200 optimizer "
            "steps of 32 samples (on 495 labels: 13 epochs); --fixed-epochs trains exactly that many.") in said


@pytest.mark.parametrize("command", ["resume", "watch"])
def test_dask_options_on_a_segmentation_campaign_are_one_line_refused(segmentation_campaign, command) -> None:
    """(was a NameError traceback: the message's ConfigError was never imported)"""
    result = run_cli(command, SEGMENTATION_CAMPAIGN, "--dask-workers", "2", "--database-url",
                     segmentation_campaign.url, cwd=segmentation_campaign.folder)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        "error: --dask-address / --dask-workers score classification pools; a segmentation campaign scores in one "
        "process (leave them out)"]


def test_report_and_status_round_import_no_torch(calibrated_experiment, tmp_path) -> None:
    """The report (its gallery reads sample PNGs, its calibration section names the predictor) and
    `status --round` of a round with a fitted temperature run without importing torch (start-up:
    bench/startup.py). In process in a fresh interpreter, so that ``sys.modules`` can be read after."""
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "r.html"
    commands = [["report", "tiny-random-seed1", "--out", str(out), "--database-url", calibrated_experiment.url],
                ["status", "tiny-random-seed1", "--round", "2", "--database-url", calibrated_experiment.url]]
    code = ("import json, sys\nfrom activelabel.cli import app\n"
            "for args in json.loads(sys.argv[1]):\n    app(args, standalone_mode=False)\n"
            "print(json.dumps(sorted(m for m in ('torch', 'prefect') if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code, json.dumps(commands)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    said = " ".join(result.stdout.split())
    assert "Calibration of the mean of 2 MC-dropout passes · temperature 1.250" in said
    page = out.read_text()
    assert "data:image/png;base64," in page and "not readable here" not in page  # the gallery drew samples
    assert "fitted for the mean of 2 MC-dropout passes" in page
