"""`activelabel report CAMPAIGN` of a segmentation campaign (issue 10): mIoU, per-class IoU,
embedded heatmaps with their statistics, the pixel balance of the picks and the settings,
all equal to what the database and the heatmap files hold; no classification-only section."""

from __future__ import annotations

import base64
import io
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import SEGMENTATION_CAMPAIGN
from PIL import Image
from report_tiny import ReportParser, run_cli

from activelabel.report.html import score_words

GALLERY = 4  # heatmaps embedded per round (the rounds pick 6)


def _report(exp, out, *extra):
    result = run_cli("report", SEGMENTATION_CAMPAIGN, "--out", str(out), "--gallery-size", str(GALLERY), *extra,
                     "--database-url", exp.url, cwd=exp.folder)
    assert result.returncode == 0, result.stderr
    parser = ReportParser()
    parser.feed(out.read_text(encoding="utf-8"))
    return result, parser


@pytest.fixture(scope="module")
def report(segmentation_campaign):
    exp = segmentation_campaign
    result, parser = _report(exp, exp.folder / "seg.html")
    assert f"Wrote the campaign report of {SEGMENTATION_CAMPAIGN!r} (1 campaign) to" in result.stdout
    return exp, parser


def _rounds(exp) -> list[tuple[int, int, dict]]:
    return [(i, n, json.loads(m)) for i, n, m in exp.query(
        'SELECT "index", labeled_count, segmentation_metrics FROM round ORDER BY "index"')]


def test_miou_pixel_metrics_and_per_class_iou_are_the_stored_ones(report) -> None:
    exp, page = report
    rounds = _rounds(exp)
    assert [i for i, _, _ in rounds] == [1, 2]
    table = page.tables["rounds"]
    assert table[0][:7] == ["round", "kind", "trained on", "mIoU", "pixel accuracy", "pixel ECE", "pixels measured"]
    assert [row[:7] for row in table[1:]] == [
        [str(i), "active", str(n), f"{m['miou']:.4f}", f"{m['pixel_accuracy']:.4f}", f"{m['pixel_ece']:.4f}",
         str(m["pixels"])] for i, n, m in rounds]
    # What each round's U-Net training ran (round.training): batches of 8, at least 200 steps.
    trainings = [json.loads(t) for (t,) in exp.query('SELECT training FROM round ORDER BY "index"')]
    assert [(t["trained_on"], t["batch_size"], t["learning_rate"], t["recipe"]) for t in trainings] == [
        (n, 8, 5e-3, "segmentation") for _, n, _ in rounds]
    assert [(t["epochs"], t["steps"]) for t in trainings] == [
        (-(-200 // -(-n // 8)), -(-200 // -(-n // 8)) * (n // 8 + (n % 8 > 1))) for _, n, _ in rounds]
    assert table[0][7:9] == ["epochs", "steps"]
    assert [row[7:9] for row in table[1:]] == [[f"{t['epochs']:,}", f"{t['steps']:,}"] for t in trainings]
    labels = json.loads(exp.query("SELECT labels FROM campaign")[0][0])
    ious = page.tables["per-class-iou"]
    assert ious[0] == ["round", "labeled images", *labels, "mIoU"]
    assert ious[1:] == [[str(i), str(n), *[f"{m['per_class_iou'][c]:.4f}" for c in labels], f"{m['miou']:.4f}"]
                        for i, n, m in rounds]
    # learning curves of the three stored metrics; none of accuracy, NLL, ECE or calibration
    assert {"learning-curve-miou", "learning-curve-pixel-accuracy", "learning-curve-pixel-ece"} <= set(page.figures)
    assert not {"learning-curve-accuracy", "learning-curve-nll", "class-balance", "calibration-curves"} & set(page.figures)
    # labeled images to reach each default mIoU target (0.6, 0.7, 0.8), read off the stored curve
    def first(target: float) -> str:
        return next((str(n) for _, n, m in rounds if m["miou"] >= target), "not reached")

    assert page.tables["labels-to-target"][1:] == [["bald", first(0.6), first(0.7), first(0.8)]]
    assert "fewer than 500 labels" not in page.text
    # 8 and 14 labeled images: below the 20 from which a round fits a per-pixel temperature
    assert "No temperature scaling in any round" in page.text
    assert "fewer than 20 labeled images (a segmentation round fits a per-pixel temperature" in page.text


def test_settings_name_the_task_model_uncertainty_and_aggregation(report) -> None:
    _, page = report
    settings = dict(page.tables["settings"][1:])
    assert settings["task kind"] == "segmentation"
    assert settings["model"] == "unet_small (dropout 0.5 before the segmentation head)"
    assert settings["uncertainty method"] == "mc_dropout — MC dropout, T = 2 stochastic passes"
    assert settings["per-pixel map scored"] == "bald"
    assert settings["aggregation (pixels → image score)"] == "top_q: mean of the top 0.1 of pixels"
    assert settings["classes"] == "background, disc, square, line, dot"
    assert settings["batch_size"] == "6" and settings["dataset"] == "shapes?n=60&size=32"


def test_heatmaps_are_embedded_byte_for_byte_with_their_statistics(report) -> None:
    exp, page = report
    stored = exp.query(
        'SELECT r."index", s.rank, p.uri, h.map_name, s.score, h.mean, h.max, h.top_q_mean, h.q, h.path '
        "FROM heatmap h JOIN round r ON r.id = h.round_id JOIN selection s ON s.round_id = h.round_id "
        'AND s.sample_id = h.sample_id JOIN sample p ON p.id = h.sample_id ORDER BY r."index", s.rank')
    assert len(stored) == 2 * 6
    assert page.tables["heatmaps"][1:] == [
        [str(i), str(rank + 1), uri, name, *map(score_words, (score, mean, top, topq)), f"{q:g}", path]
        for i, rank, uri, name, score, mean, top, topq, q, path in stored]
    embedded = {name: srcs for name, srcs in page.figures.items() if name.startswith("heatmap-")}
    assert set(embedded) == {f"heatmap-round-{i}-rank-{rank + 1}" for i, rank, *_ in stored if rank < GALLERY}
    for i, rank, uri, _, _, _, _, topq, q, path in stored:
        if rank >= GALLERY:
            continue
        (src,) = embedded[f"heatmap-round-{i}-rank-{rank + 1}"]
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.removeprefix("data:image/png;base64,"))
        with open(path, "rb") as png:
            assert data == png.read()  # self-contained: the file's own bytes
        caption = page.captions[f"heatmap-round-{i}-rank-{rank + 1}"]
        assert uri in caption and f"top-{q:g} mean {score_words(topq)}" in caption


def test_pixel_balance_of_the_picks_is_computed_from_the_stored_masks(report) -> None:
    exp, page = report
    labels = json.loads(exp.query("SELECT labels FROM campaign")[0][0])
    rows = exp.query('SELECT a.mask, r."index" FROM annotation a LEFT JOIN selection s ON s.sample_id = a.sample_id '
                     "LEFT JOIN round r ON r.id = s.round_id WHERE a.mask IS NOT NULL")
    counts: dict = {}
    images: dict = {}
    for blob, index in rows:
        mask = np.asarray(Image.open(io.BytesIO(blob)))
        counts[index] = counts.get(index, 0) + np.bincount(mask[mask != 255].ravel(), minlength=len(labels))
        images[index] = images.get(index, 0) + 1
    expected = [[("seed masks" if k is None else f"round {k}"), str(images[k]),
                 *[f"{100 * v / counts[k].sum():.1f}" for v in counts[k]]] for k in (None, 1, 2)]
    assert page.tables["pixel-share"][0] == ["picked in", "images", *[f"{c} %" for c in labels]]
    assert page.tables["pixel-share"][1:] == expected
    assert images == {None: 8, 1: 6, 2: 6} and "pixel-balance" in page.figures


def _report_of_a_changed_copy(exp, tmp_path: Path, change: str):
    """The report page of a copy of the campaign's database after one SQL ``change``."""
    copy = tmp_path / "seg.db"
    shutil.copyfile(exp.database, copy)
    with sqlite3.connect(copy) as connection:
        connection.execute(change)
    _, page = _report(type(exp)(exp.folder, copy, f"sqlite:///{copy}", [], "", ""), tmp_path / "changed.html")
    return page


def test_a_moved_heatmap_file_is_named_and_the_rest_still_shows(segmentation_campaign, tmp_path) -> None:
    page = _report_of_a_changed_copy(segmentation_campaign, tmp_path, "UPDATE heatmap SET path = '/nowhere/gone.png' "
                                     "WHERE id = (SELECT min(id) FROM heatmap)")
    assert "its heatmap is not readable at /nowhere/gone.png any more" in page.text
    assert sum(name.startswith("heatmap-") for name in page.figures) == 2 * GALLERY - 1


def test_opening_sentence_and_score_histograms_come_from_the_stored_rounds(report) -> None:
    """The page opens with the latest round (labeled images, mIoU, pixel accuracy and ECE, where
    its picks' mean-pixel BALD sits in the pool) and draws each active round's image scores,
    pool against selected: the same helpers as the classification page, in pixel words."""
    import math

    exp, page = report
    (index, labeled, m), = _rounds(exp)[-1:]
    rows = exp.query('SELECT s.sample_id, s.epistemic FROM score s JOIN round r ON r.id = s.round_id '
                     'WHERE r."index" = ? AND s.strategy = r.strategy AND s.total IS NOT NULL', index)
    chosen = {sid for (sid,) in exp.query(
        'SELECT l.sample_id FROM selection l JOIN round r ON r.id = l.round_id WHERE r."index" = ?', index)}
    pool = np.array([e for _, e in rows])
    picked = np.array([e for sid, e in rows if sid in chosen])
    share = 100.0 * np.mean(pool < np.median(picked))
    assert (f"Latest complete round: {index} (active) · trained on {labeled} masks · mIoU {m['miou']:.4f} · "
            f"pixel accuracy {m['pixel_accuracy']:.4f} · pixel ECE {m['pixel_ece']:.4f} · its {len(picked)} picks' "
            f"median mean-pixel BALD is above {math.floor(share):.0f} % of the scored pool.") in page.text
    for i, _, _ in _rounds(exp):
        assert page.captions[f"uncertainty-round-{i}"] == (
            f"Round {i}: bald image scores (the per-pixel map aggregated per image), pool against selected")
        assert page.figures[f"uncertainty-round-{i}"][0].startswith("data:image/png;base64,")


def test_a_round_drawn_at_random_is_named_in_the_pixel_balance_and_left_out_of_its_chart(
        segmentation_campaign, tmp_path) -> None:
    # An unlabeled folder starts with a cold-start round: its images are drawn at random, not
    # picked by the strategy (trial 14 F3 for classification). The campaign's round 1 is made one.
    page = _report_of_a_changed_copy(segmentation_campaign, tmp_path, "UPDATE round SET kind = 'cold_start' "
                                     "WHERE \"index\" = 1")
    _, before = _report(segmentation_campaign, tmp_path / "before.html")
    rows, rows_before = page.tables["pixel-share"][1:], before.tables["pixel-share"][1:]
    assert [r[0] for r in rows] == ["seed masks", "round 1 (cold start, drawn at random)", "round 2"]
    assert [r[1:] for r in rows] == [r[1:] for r in rows_before]  # same images, same shares
    assert "Left out of the chart: round 1 (cold start)" in page.text
    assert "pixel-balance" in page.figures and "Left out of the chart" not in before.text
