"""The tiny experiment of the report tests, run once per session (see report_tiny), and copies
of its database with rounds that store no calibration or decomposition."""

from __future__ import annotations

import math
import shutil
import sqlite3
from collections import defaultdict

import pytest
from report_tiny import COMMON, ROUND_ROWS, SEEDS, STRATEGIES, ReportParser, TinyExperiment, run_cli


@pytest.fixture(scope="session")
def tiny_experiment(tmp_path_factory) -> TinyExperiment:
    folder = tmp_path_factory.mktemp("tiny-experiment")
    database = folder / "experiment.db"
    url = f"sqlite:///{database}"
    first = run_cli("compare", *COMMON, "--seeds", "1", "--workers", "1", "--database-url", url, cwd=folder)
    assert first.returncode == 0, first.stderr
    with sqlite3.connect(database) as connection:
        first_rounds = connection.execute(ROUND_ROWS).fetchall()
    second = run_cli("compare", *COMMON, "--seeds", "2", "--workers", "2", "--database-url", url, cwd=folder)
    assert second.returncode == 0, second.stderr
    return TinyExperiment(folder, database, url, first_rounds, second.stdout, second.stderr)


# What storage holds for rounds that measured less, written into a copy of the tiny database:
# campaign tiny-entropy-seed0 gets an evaluation round 0 (no model), its round 1 becomes a
# cold-start round (random scores: no decomposition, no metrics), and its round 2 keeps its
# fitted temperature but has no yardstick to measure it on (before/after None).
DEGRADE_ONE_CAMPAIGN = [
    """INSERT INTO round (campaign_id, "index", status, strategy, kind, labeled_count, timings, started_at,
       finished_at) SELECT id, 0, 'complete', strategy, 'evaluation', 0, '{"train": 0.01, "score": 0.02,
       "select": 0.01}', '2026-01-01 00:00:00', '2026-01-01 00:00:01' FROM campaign
       WHERE name = 'tiny-entropy-seed0'""",
    """UPDATE round SET kind = 'cold_start', test_accuracy = NULL, test_nll = NULL, test_ece = NULL,
       model_version = NULL, uncertainty = NULL
       WHERE "index" = 1 AND campaign_id = (SELECT id FROM campaign WHERE name = 'tiny-entropy-seed0')""",
    """UPDATE score SET total = NULL, aleatoric = NULL, epistemic = NULL WHERE round_id = (SELECT r.id FROM round r
       JOIN campaign c ON c.id = r.campaign_id WHERE c.name = 'tiny-entropy-seed0' AND r."index" = 1)""",
    """UPDATE round SET calibration = json_remove(json_set(calibration, '$.before', json('null'), '$.after',
       json('null')), '$.skipped')
       WHERE "index" = 2 AND campaign_id = (SELECT id FROM campaign WHERE name = 'tiny-entropy-seed0')""",
]
# Round 2 of tiny-random-seed1 as a round that kept a fitted temperature stores it. The tiny
# experiment's held-out splits (75 labels, ~97 % right, 0-5 errors) are too small for the round to
# keep one (campaign/calibrate.py), so the fitted state is written here, from the round's own
# measured figures, to test how the report draws it.
CALIBRATED = [
    """UPDATE round SET calibration = json_set(json_remove(calibration, '$.skipped'), '$.temperature', 1.25,
       '$.after', json_set(json_extract(calibration, '$.before'), '$.nll', json_extract(calibration, '$.before.nll') * 0.9,
       '$.ece', json_extract(calibration, '$.before.ece') * 0.8))
       WHERE "index" = 2 AND campaign_id = (SELECT id FROM campaign WHERE name = 'tiny-random-seed1')""",
]
# No round of the experiment stored a calibration (as with campaigns that stay under 500 labels).
NO_CALIBRATION = ["UPDATE round SET calibration = NULL"]


def _degraded_copy(tmp_path_factory, exp: TinyExperiment, name: str, statements: list[str]) -> TinyExperiment:
    folder = tmp_path_factory.mktemp(name)
    database = folder / "experiment.db"
    shutil.copyfile(exp.database, database)
    with sqlite3.connect(database) as connection:
        for statement in statements:
            connection.execute(statement)
    return TinyExperiment(exp.folder, database, f"sqlite:///{database}", [], "", "")


@pytest.fixture(scope="session")
def degraded_campaign(tmp_path_factory, tiny_experiment) -> TinyExperiment:
    return _degraded_copy(tmp_path_factory, tiny_experiment, "degraded-campaign", DEGRADE_ONE_CAMPAIGN)


@pytest.fixture(scope="session")
def calibrated_experiment(tmp_path_factory, tiny_experiment) -> TinyExperiment:
    return _degraded_copy(tmp_path_factory, tiny_experiment, "calibrated", CALIBRATED)


@pytest.fixture(scope="session")
def uncalibrated_experiment(tmp_path_factory, tiny_experiment) -> TinyExperiment:
    return _degraded_copy(tmp_path_factory, tiny_experiment, "uncalibrated", NO_CALIBRATION)


def _curves(exp) -> dict[str, dict[int, list[tuple[int, float]]]]:
    """strategy -> seed -> [(labels, accuracy)] straight from the round table."""
    curves: dict[str, dict[int, list]] = defaultdict(dict)
    for strategy in STRATEGIES:
        for seed in SEEDS:
            curves[strategy][seed] = exp.query(
                "SELECT r.labeled_count, r.test_accuracy FROM round r JOIN campaign c ON c.id = r.campaign_id "
                "WHERE c.name = ? AND r.status = 'complete' AND r.kind = 'active' ORDER BY r.\"index\"",
                f"tiny-{strategy}-seed{seed}")
    return curves


@pytest.fixture(scope="session")
def experiment_report(tiny_experiment):
    exp = tiny_experiment
    curves = _curves(exp)
    # a target the entropy mean curve reaches only at its last point, one below all, one above all
    mean_entropy_last = sum(curves["entropy"][s][-1][1] for s in SEEDS) / len(SEEDS)
    middle = math.floor(mean_entropy_last * 10000) / 10000
    targets = [0.3, middle, 0.999]
    out = exp.folder / "tiny.html"
    result = run_cli("report", "tiny", "--out", str(out), *[a for t in targets for a in ("--target", f"{t:g}")],
                     "--database-url", exp.url, cwd=exp.folder)
    assert result.returncode == 0, result.stderr
    assert "experiment report" in result.stdout
    parser = ReportParser()
    parser.feed(out.read_text(encoding="utf-8"))
    return out, parser, curves, targets


@pytest.fixture(scope="session")
def campaign_report(calibrated_experiment):
    """(path, parsed) campaign report of tiny-random-seed1, its round 2 with a fitted temperature
    (``CALIBRATED``)."""
    exp = calibrated_experiment
    out = exp.database.parent / "one.html"
    result = run_cli("report", "tiny-random-seed1", "--out", str(out), "--database-url", exp.url, cwd=exp.folder)
    assert result.returncode == 0, result.stderr
    parser = ReportParser()
    parser.feed(out.read_text(encoding="utf-8"))
    return out, parser


@pytest.fixture(scope="session")
def degraded_report(degraded_campaign):
    """(path, parsed) campaign report of tiny-entropy-seed0 in the degraded copy
    (``DEGRADE_ONE_CAMPAIGN``): rendered once for the uncertainty and browser tests."""
    exp = degraded_campaign
    out = exp.folder / "degraded-campaign.html"
    result = run_cli("report", "tiny-entropy-seed0", "--out", str(out), "--database-url", exp.url, cwd=exp.folder)
    assert result.returncode == 0, result.stderr
    parser = ReportParser()
    parser.feed(out.read_text(encoding="utf-8"))
    return out, parser


# A 2-round simulated segmentation campaign, through the CLI as a user runs it (about 30 s):
# 60 generated 32 x 32 shapes images (12 of them the test split), 8 seed masks, 6 picks a round.
SEGMENTATION_DEMO = ["demo", "--task", "segmentation", "--dataset", "shapes?n=60&size=32", "--rounds", "2",
                     "--batch-size", "6", "--initial-labeled", "8", "--mc-samples", "2", "--device", "cpu"]
SEGMENTATION_CAMPAIGN = "demo-seg-bald-seed0"


@pytest.fixture(scope="session")
def segmentation_campaign(tmp_path_factory) -> TinyExperiment:
    folder = tmp_path_factory.mktemp("segmentation-campaign")
    database = folder / "seg.db"
    url = f"sqlite:///{database}"
    result = run_cli(*SEGMENTATION_DEMO, "--database-url", url, cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return TinyExperiment(folder, database, url, [], result.stdout, result.stderr)
