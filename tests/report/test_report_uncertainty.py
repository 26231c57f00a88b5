"""Issue 12's figures in the reports: calibration (temperature scaling) and the uncertainty
decomposition, checked against what the tiny experiment stored (see conftest and report_tiny).

Round 1 of every campaign has 495 labels (no calibration), round 2 has 500 (calibrated where its
75 held-out labels can tell a temperature; otherwise it keeps T = 1 and says why). The
degraded copies add an evaluation round, a cold-start round and a temperature with no split to
measure it on, or drop every calibration: each absent figure must be a sentence, not axes.
"""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest
from report_tiny import BATCH, INITIAL, SEEDS, STRATEGIES, ReportParser, run_cli

from activelabel.report.html import score_words

CAMPAIGN = "tiny-random-seed1"  # the campaign of the conftest's campaign_report
TOO_FEW = "fewer than 500 labels (temperature scaling starts at 500, holding 15% of them out of training to fit T)"


def _report(exp, name: str, out_name: str) -> ReportParser:
    out = exp.folder / out_name
    result = run_cli("report", name, "--out", str(out), "--database-url", exp.url, cwd=exp.folder)
    assert result.returncode == 0, result.stderr
    parser = ReportParser()
    parser.feed(out.read_text(encoding="utf-8"))
    return parser


def _png(parser: ReportParser, name: str) -> bytes:
    [src] = parser.figures[name]
    png = base64.b64decode(src.split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    return png


def _calibration(exp, campaign: str, index: int) -> dict | None:
    [(stored,)] = exp.query("SELECT r.calibration FROM round r JOIN campaign c ON c.id = r.campaign_id "
                            "WHERE c.name = ? AND r.\"index\" = ?", campaign, index)
    return None if stored is None else json.loads(stored)


def _parts(exp, campaign: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(pool [N, 3], selected [K, 3]) total / aleatoric / epistemic straight from the score table."""
    rows = exp.query(
        "SELECT s.sample_id, s.total, s.aleatoric, s.epistemic FROM score s JOIN round r ON r.id = s.round_id "
        "JOIN campaign c ON c.id = r.campaign_id WHERE c.name = ? AND r.\"index\" = ? AND s.strategy = r.strategy",
        campaign, index)
    chosen = {sid for (sid,) in exp.query(
        "SELECT l.sample_id FROM selection l JOIN round r ON r.id = l.round_id JOIN campaign c ON c.id = r.campaign_id "
        "WHERE c.name = ? AND r.\"index\" = ?", campaign, index)}
    pool = np.array([r[1:] for r in rows], dtype=np.float64)
    return pool, np.array([r[1:] for r in rows if r[0] in chosen], dtype=np.float64)


def test_the_campaign_report_shows_each_rounds_stored_calibration(calibrated_experiment, campaign_report):
    exp, parser = calibrated_experiment, campaign_report[1]
    assert _calibration(exp, CAMPAIGN, 1) is None
    stored = _calibration(exp, CAMPAIGN, 2)
    assert stored["validation_size"] == 75  # 15 % of 500
    header, *rows = parser.tables["calibration"]
    assert header[:6] == ["round", "kind", "labels", "held out", "T", "T2"]
    first, second = rows
    assert first[:3] == ["1", "active", str(INITIAL)] and first[3:14] == [""] * 11
    assert first[14] == TOO_FEW
    expected = [f"{stored[when][key]:.4f}" for key in ("accuracy", "nll", "brier", "ece") for when in ("before", "after")]
    assert second == ["2", "active", str(INITIAL + BATCH), "75", f"{stored['temperature']:.3f}",
                      f"{stored['mixture_temperature']:.3f}", *expected, ""]
    # T is fitted for what acquisition reads: the mean of the round's 2 MC-dropout passes, so the
    # figures are that predictor's, not the single deterministic pass the learning curve measured.
    assert stored["predictor"] == {"method": "mc_dropout", "passes": 2, "members": 1}
    [(test_ece,)] = exp.query("SELECT r.test_ece FROM round r JOIN campaign c ON c.id = r.campaign_id "
                              "WHERE c.name = ? AND r.\"index\" = 2", CAMPAIGN)
    assert stored["before"]["ece"] != pytest.approx(test_ece, abs=1e-6)
    assert "fitted for the mean of 2 MC-dropout passes" in parser.captions["reliability-round-2"]
    # One reliability diagram, of the calibrated round only, and the curves against labels.
    _png(parser, "reliability-round-2")
    assert "reliability-round-1" not in parser.figures
    assert f"T = {stored['temperature']:.3f}" in parser.captions["reliability-round-2"]
    t2 = stored["mixture_temperature"]
    assert (f"mixture T2 = {t2:.3f}" in parser.captions["reliability-round-2"]) == (t2 != 1.0)
    _png(parser, "calibration-curves")
    assert f"Round 1: no calibration — {TOO_FEW}." in parser.text


def test_the_campaign_report_places_the_selected_samples_in_the_pools_decomposition(calibrated_experiment,
                                                                                   campaign_report):
    exp, parser = calibrated_experiment, campaign_report[1]
    header, *rows = parser.tables["decomposition"]
    assert header == ["round", "scored", "pool total", "pool aleatoric", "pool epistemic", "selected",
                      "selected total", "selected aleatoric", "selected epistemic"]
    assert [row[0] for row in rows] == ["1", "2"]
    for row in rows:
        pool, selected = _parts(exp, CAMPAIGN, int(row[0]))
        assert np.allclose(pool[:, 0], pool[:, 1] + pool[:, 2], atol=1e-9)  # total = aleatoric + epistemic
        assert row[1:] == [str(len(pool)), *[f"{v:.4f}" for v in pool.mean(axis=0)], str(BATCH),
                           *[f"{v:.4f}" for v in selected.mean(axis=0)]]
        _png(parser, f"decomposition-round-{row[0]}")
        share = 100.0 * np.mean(pool[:, 2] < np.median(selected[:, 2]))
        assert f"median epistemic uncertainty is above {math.floor(share)} % of the pool" in parser.captions[
            f"decomposition-round-{row[0]}"]
    # Entropy picks the most uncertain: its picks sit above the pool in total uncertainty.
    entropy_pool, entropy_selected = _parts(exp, "tiny-entropy-seed1", 2)
    assert entropy_selected[:, 0].mean() > entropy_pool[:, 0].mean()
    pool, selected = _parts(exp, CAMPAIGN, 2)
    # The gallery gives each pick's BALD score next to its acquisition score.
    [(score, bald)] = exp.query(
        "SELECT l.score, s.epistemic FROM selection l JOIN round r ON r.id = l.round_id JOIN campaign c "
        "ON c.id = r.campaign_id JOIN score s ON s.round_id = l.round_id AND s.sample_id = l.sample_id "
        "AND s.strategy = r.strategy WHERE c.name = ? AND r.\"index\" = 2 AND l.rank = 0", CAMPAIGN)
    # A random campaign's score is its uniform draw, named so (trial 17 F7).
    assert f"#1 random draw {score_words(score)} · BALD {score_words(bald)}" in parser.text
    _png(parser, "class-balance")
    # The page opens with the latest round in one sentence.
    [(accuracy,)] = exp.query("SELECT r.test_accuracy FROM round r JOIN campaign c ON c.id = r.campaign_id "
                              "WHERE c.name = ? AND r.\"index\" = 2", CAMPAIGN)
    stored = _calibration(exp, CAMPAIGN, 2)
    share = 100.0 * np.mean(pool[:, 2] < np.median(selected[:, 2]))
    # 500 labels, 75 held out for calibration: what status' "trained on" says (425)
    assert (f"Latest complete round: 2 (active) · trained on {INITIAL + BATCH - 75} labels (75 held out for "
            f"calibration) · test accuracy {accuracy:.4f} · "
            f"ECE of the mean of 2 MC-dropout passes {stored['before']['ece']:.4f} → {stored['after']['ece']:.4f} "
            f"with T = {stored['temperature']:.3f}"
            + ("" if stored.get("mixture_temperature", 1.0) == 1.0 else
               f" and mixture T2 = {stored['mixture_temperature']:.3f}") + " · "
            f"its {BATCH} picks' median epistemic uncertainty is above {math.floor(share)} % of the scored pool.") in parser.text


def test_the_experiment_report_compares_calibration_and_decomposition_per_strategy(tiny_experiment,
                                                                                 experiment_report):
    exp, parser = tiny_experiment, experiment_report[1]
    _png(parser, "calibration-curves")
    header, *rows = parser.tables["calibration-by-labels"]
    assert header == ["strategy", "labels", "seeds", "ECE before", "ECE after", "NLL before", "NLL after", "T", "T2"]
    assert [(r[0], r[1], r[2]) for r in rows] == [(s, str(INITIAL + BATCH), "2") for s in STRATEGIES]
    for row in rows:
        stored = [_calibration(exp, f"tiny-{row[0]}-seed{seed}", 2) for seed in SEEDS]
        for cell, values in zip(row[3:], (
            [c["before"]["ece"] for c in stored], [c["after"]["ece"] for c in stored],
            [c["before"]["nll"] for c in stored], [c["after"]["nll"] for c in stored],
            [c["temperature"] for c in stored], [c["mixture_temperature"] for c in stored],
        )):
            assert cell == f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"
    _png(parser, "decomposition-comparison")
    header, *rows = parser.tables["decomposition-comparison"]
    assert [(r[0], r[1], r[2]) for r in rows] == [(s, str(i), "2") for s in STRATEGIES for i in (1, 2)]
    for row in rows:
        parts = [_parts(exp, f"tiny-{row[0]}-seed{seed}", int(row[1])) for seed in SEEDS]
        pool = np.mean([p.mean(axis=0) for p, _ in parts], axis=0)
        chosen = np.mean([s.mean(axis=0) for _, s in parts], axis=0)
        assert row[3:6] == [f"{pool[i]:.4f} / {chosen[i]:.4f}" for i in range(3)]
        assert row[6] == f"{chosen[2] / pool[2]:.2f}"


def test_rounds_without_calibration_or_decomposition_get_a_sentence_not_a_figure(degraded_campaign, degraded_report):
    exp, parser = degraded_campaign, degraded_report[1]
    rows = {row[0]: row for row in parser.tables["calibration"][1:]}
    assert rows["0"][1] == "evaluation" and rows["0"][-1] == "an evaluation round labels the yardstick; no model is trained"
    assert rows["1"][1] == "cold start" and rows["1"][-1] == "a cold-start round picks at random before any model is trained"
    stored = _calibration(exp, 'tiny-entropy-seed0', 2)
    assert rows["2"][4:6] == [f"{stored['temperature']:.3f}", f"{stored['mixture_temperature']:.3f}"]
    assert rows["2"][6:14] == [""] * 8
    assert rows["2"][-1].startswith("temperature fitted, but the campaign has no labeled test or evaluation split")
    text = parser.text
    assert "Round 0: no calibration — an evaluation round labels the yardstick; no model is trained." in text
    assert "Round 1: no calibration — a cold-start round picks at random before any model is trained." in text
    assert "Round 0: no uncertainty decomposition — an evaluation round orders the evaluation split at random" in text
    assert "Round 1: no uncertainty decomposition — a cold-start round scores the pool at random" in text
    # Only what was stored is drawn: no reliability diagram, the temperature alone against labels,
    # the decomposition of round 2 only, one (round 2) point on the learning curves.
    assert not [name for name in parser.figures if name.startswith("reliability-round-")]
    _png(parser, "calibration-curves")
    assert [row[0] for row in parser.tables["decomposition"][1:]] == ["2"]
    assert {name for name in parser.figures if name.startswith(("decomposition-round-", "uncertainty-round-"))} == {
        "decomposition-round-2", "uncertainty-round-2"}
    _png(parser, "learning-curve-accuracy")


def test_a_round_that_kept_t_1_says_why_and_draws_no_reliability_diagram(tiny_experiment):
    exp = tiny_experiment
    skipped = [(name, _calibration(exp, name, 2)) for name in (f"tiny-{s}-seed{seed}" for s in STRATEGIES for seed in SEEDS)]
    skipped = [(name, c) for name, c in skipped if c.get("skipped")]
    assert skipped  # the tiny held-out splits (75 labels, ~97 % right) mostly cannot tell a temperature
    name, stored = skipped[0]
    assert stored["temperature"] == 1.0 and stored["before"] == stored["after"]
    parser = _report(exp, name, "kept-t-1.html")
    assert f"Round 2: no calibration — no temperature fitted: {stored['skipped']}." in parser.text
    assert not [figure for figure in parser.figures if figure.startswith("reliability-round-")]


def test_an_experiment_without_any_calibration_says_why(uncalibrated_experiment):
    parser = _report(uncalibrated_experiment, "tiny", "uncalibrated.html")
    assert "calibration-curves" not in parser.figures and "calibration-by-labels" not in parser.tables
    assert ("No round of this experiment stored a calibration, so there is no calibration figure: "
            f"{TOO_FEW}; no calibration stored for this round.") in parser.text
    _png(parser, "decomposition-comparison")  # the decomposition does not depend on calibration


def test_each_kind_of_missing_calibration_has_its_own_reason():
    from activelabel.report.data import RoundRow
    from activelabel.report.uncertainty import calibration_absence

    def row(kind="active", labeled=600, calibration=None):
        return RoundRow(1, kind, labeled, 0.9, 0.3, 0.02, {}, calibration)

    measured = {"temperature": 1.2, "validation_size": 90, "before": {"ece": 0.05}, "after": {"ece": 0.02}}
    assert calibration_absence(row(calibration=measured), {}) is None
    skipped = {**measured, "temperature": 1.0, "skipped": "the 75 held-out labels are all predicted right"}
    assert calibration_absence(row(calibration=skipped), {}) == "no temperature fitted: the 75 held-out labels are all predicted right"
    assert calibration_absence(row(calibration={**measured, "before": None, "after": None}), {}).startswith(
        "temperature fitted, but the campaign has no labeled test or evaluation split")
    assert calibration_absence(row("evaluation", 0), {}) == "an evaluation round labels the yardstick; no model is trained"
    assert calibration_absence(row("cold_start", 10), {}).startswith("a cold-start round")
    assert calibration_absence(row(), {"calibrate": False}) == "calibration is off for this campaign (calibrate = false)"
    assert calibration_absence(row(labeled=499), {}) == TOO_FEW
    assert calibration_absence(row(labeled=500), {}) == "no calibration stored for this round"
    # a segmentation round counts labeled images (from 20 on it fits a per-pixel T), not "fewer than 500 labels"
    seg = {"task": "segmentation", "calibrate": True}
    assert calibration_absence(row(labeled=8), seg) == (
        "fewer than 20 labeled images (a segmentation round fits a per-pixel temperature from 20 on, holding 15% "
        "of them, at least 5, out of training); the pixel ECE is the uncalibrated model's")
    assert calibration_absence(row(labeled=20), seg) == "no calibration stored for this round"
    assert calibration_absence(row(labeled=8), seg | {"calibrate": False}) == (
        "calibration is off for this campaign (calibrate = false)")
