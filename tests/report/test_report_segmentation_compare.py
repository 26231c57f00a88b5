"""`activelabel compare --task segmentation` then `activelabel report` on a tiny shapes experiment.

2 strategies × 2 seeds × 2 rounds on 60 generated 32 × 32 images (6 seed masks, batches of 4,
20 fixed epochs of one step): first --seeds 1 (as if interrupted after the first seed), then
--seeds 2 with two worker processes. --mc-samples is left unset, so it takes `demo --task segmentation`'s value (8). The
report's tables are checked against the rounds the database holds.
"""

from __future__ import annotations

import base64
import json
import math
import sqlite3
from pathlib import Path

import pytest
from report_tiny import ReportParser, run_cli
from test_report_browser import _errors, _load, browser  # noqa: F401  (browser: the module's Chromium fixture)

STRATEGIES, SEEDS, ROUNDS, BATCH, INITIAL = ("random", "entropy"), (0, 1), 2, 4, 6
COMMON = ["--task", "segmentation", "--dataset", "shapes?n=60&size=32", "--strategies", ",".join(STRATEGIES),
          "--rounds", str(ROUNDS), "--batch-size", str(BATCH), "--initial-labeled", str(INITIAL),
          "--epochs", "20", "--fixed-epochs", "--device", "cpu", "--experiment", "segtiny"]
ROUND_ROWS = ("SELECT r.id, c.name, r.\"index\", r.started_at, r.finished_at FROM round r "
              "JOIN campaign c ON c.id = r.campaign_id ORDER BY r.id")


class Ran:
    def __init__(self, folder: Path, first_rounds: list, second) -> None:
        self.folder, self.first_rounds, self.second = folder, first_rounds, second
        self.database = folder / "seg.db"
        self.url = f"sqlite:///{self.database}"

    def query(self, sql: str, *params) -> list[tuple]:
        with sqlite3.connect(self.database) as connection:
            return connection.execute(sql, params).fetchall()

    def miou(self, strategy: str, seed: int) -> list[tuple[int, float]]:
        """(labeled images, mIoU) of the arm's complete active rounds, as the database holds them."""
        return [(n, float(m)) for n, m in self.query(
            "SELECT r.labeled_count, json_extract(r.segmentation_metrics, '$.miou') FROM round r "
            "JOIN campaign c ON c.id = r.campaign_id WHERE c.name = ? AND r.status = 'complete' "
            "AND r.kind = 'active' ORDER BY r.\"index\"", f"segtiny-{strategy}-seed{seed}")]


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> Ran:
    folder = tmp_path_factory.mktemp("seg-experiment")
    url = f"sqlite:///{folder / 'seg.db'}"
    first = run_cli("compare", *COMMON, "--seeds", "1", "--workers", "1", "--database-url", url, cwd=folder)
    assert first.returncode == 0, first.stderr[-3000:]
    with sqlite3.connect(folder / "seg.db") as connection:
        first_rounds = connection.execute(ROUND_ROWS).fetchall()
    second = run_cli("compare", *COMMON, "--seeds", "2", "--workers", "2", "--database-url", url, cwd=folder)
    assert second.returncode == 0, second.stderr[-3000:]
    return Ran(folder, first_rounds, second)


@pytest.fixture(scope="module")
def report(ran) -> ReportParser:
    result = run_cli("report", "segtiny", "--database-url", ran.url, cwd=ran.folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Wrote the experiment report of 'segtiny' (4 campaigns)" in result.stdout
    parser = ReportParser()
    parser.feed((ran.folder / "segtiny.html").read_text(encoding="utf-8"))
    return parser


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0


def _first_reaching(points, target):
    return next((n for n, v in points if v >= target), None)


def test_every_strategy_and_seed_is_a_segmentation_campaign_with_the_demo_defaults(ran):
    [(config,)] = ran.query("SELECT config FROM experiment WHERE name = 'segtiny'")
    assert json.loads(config)["seeds"] == list(SEEDS)
    campaigns = ran.query("SELECT name, task_kind, config FROM campaign ORDER BY name")
    assert sorted(n for n, _, _ in campaigns) == sorted(f"segtiny-{s}-seed{seed}" for s in STRATEGIES for seed in SEEDS)
    for name, task, stored in campaigns:
        stored = json.loads(stored)
        assert task == "segmentation" and stored["task"] == "segmentation"
        # left unset: demo --task segmentation's value; round 1 trains on the seed masks
        assert stored["mc_samples"] == 8 and stored["min_labels_to_train"] == INITIAL
        assert stored["architecture"] == "unet_small" and stored["epochs"] == 20 and stored["fixed_epochs"]
        rounds = ran.query("SELECT r.status, r.kind, r.labeled_count, r.segmentation_metrics FROM round r "
                           "JOIN campaign c ON c.id = r.campaign_id WHERE c.name = ? ORDER BY r.\"index\"", name)
        assert [(s, k, n) for s, k, n, _ in rounds] == [("complete", "active", INITIAL),
                                                       ("complete", "active", INITIAL + BATCH)]
        assert all(0.0 <= json.loads(m)["miou"] <= 1.0 for *_, m in rounds)
        assert ran.query("SELECT count(*) FROM selection s JOIN campaign c ON c.id = s.campaign_id "
                         "WHERE c.name = ?", name) == [(ROUNDS * BATCH,)]
    # the final table reads each arm's last mIoU: mean ± std over seeds
    for strategy in STRATEGIES:
        mean, std = _mean_std([ran.miou(strategy, seed)[-1][1] for seed in SEEDS])
        assert f"│ {strategy}" in ran.second.stdout and f"{mean:.4f} ± {std:.4f}" in ran.second.stdout
    assert "test mIoU (mean ± std)" in ran.second.stdout


def test_every_strategy_of_a_seed_starts_from_the_same_masks_and_test_images(ran):
    for seed in SEEDS:
        seeds_of, tests_of, first = {}, {}, {}
        for strategy in STRATEGIES:
            name = f"segtiny-{strategy}-seed{seed}"
            seeds_of[strategy] = ran.query(
                "SELECT s.uri FROM annotation a JOIN sample s ON s.id = a.sample_id JOIN campaign c "
                "ON c.id = a.campaign_id WHERE c.name = ? AND a.external_id LIKE 'seed-%' ORDER BY s.uri", name)
            tests_of[strategy] = ran.query("SELECT s.uri FROM sample s JOIN campaign c ON c.id = s.campaign_id "
                                           "WHERE c.name = ? AND s.split = 'test' ORDER BY s.uri", name)
            first[strategy] = ran.miou(strategy, seed)[0]
        assert len(seeds_of["random"]) == INITIAL and len(tests_of["random"]) == 12
        assert seeds_of["random"] == seeds_of["entropy"] and tests_of["random"] == tests_of["entropy"]
        assert first["random"] == first["entropy"]  # same masks, same seed: round 1 trains the same U-Net


def test_a_rerun_does_not_redo_finished_campaigns(ran):
    assert {row[1] for row in ran.first_rounds} == {f"segtiny-{s}-seed0" for s in STRATEGIES}
    now = ran.query(ROUND_ROWS)
    assert [row for row in now if row[1].endswith("seed0")] == ran.first_rounds
    assert "2 campaigns already finished" in ran.second.stderr
    again = run_cli("compare", *COMMON, "--seeds", "2", "--database-url", ran.url, cwd=ran.folder)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 campaigns already finished" in again.stderr
    assert ran.query(ROUND_ROWS) == now


def test_the_report_draws_miou_pixel_accuracy_and_pixel_ece_curves(report):
    for name in ("learning-curve-miou", "learning-curve-pixel-accuracy", "learning-curve-pixel-ece", "timings",
                 "pixel-balance", "decomposition-comparison"):
        [src] = report.figures[name]
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "mean ± one std over seeds" in report.captions["learning-curve-miou"]
    assert "class-balance" not in report.figures and "learning-curve-accuracy" not in report.figures
    assert "segmentation rounds store no feature density" in report.text
    # heatmaps: the first seed's last-round picks, per strategy
    assert {k for k in report.figures if k.startswith("heatmap-")} == {
        f"heatmap-{s}-round-2-rank-{k}" for s in STRATEGIES for k in range(1, BATCH + 1)}
    assert all(src.startswith("data:image/png;base64,") for src in report.images)


def test_labels_to_an_miou_match_the_database(ran, report):
    rows = report.tables["labels-to-target"]
    assert rows[0] == ["strategy", "mIoU ≥ 0.6", "mIoU ≥ 0.7", "mIoU ≥ 0.8"]
    # and with a target some mean curve reaches (the lowest last mean mIoU, rounded down)
    lowest = min(sum(ran.miou(s, seed)[-1][1] for seed in SEEDS) / len(SEEDS) for s in STRATEGIES)
    target = math.floor(lowest * 1000) / 1000
    result = run_cli("report", "segtiny", "--target", f"{target}", "--target", "0.6", "--out", "low.html",
                     "--database-url", ran.url, cwd=ran.folder)
    assert result.returncode == 0, result.stderr[-3000:]
    low = ReportParser()
    low.feed((ran.folder / "low.html").read_text(encoding="utf-8"))
    for table, targets in ((rows, (0.6, 0.7, 0.8)), (low.tables["labels-to-target"], (target, 0.6))):
        by_strategy = {row[0]: row[1:] for row in table[1:]}
        assert list(by_strategy) == list(STRATEGIES)  # random first: the baseline
        for strategy in STRATEGIES:
            per_seed = [ran.miou(strategy, seed) for seed in SEEDS]
            mean = [(n, sum(c[i][1] for c in per_seed) / len(SEEDS)) for i, (n, _) in enumerate(per_seed[0])]
            for t, cell in zip(targets, by_strategy[strategy]):
                reached = _first_reaching(mean, t)
                seeds = ", ".join("—" if v is None else str(v) for v in (_first_reaching(c, t) for c in per_seed))
                assert cell == f"{'not reached' if reached is None else reached} (seeds: {seeds})"
    assert all(row[1].split(" ")[0].isdigit() for row in low.tables["labels-to-target"][1:])


def test_the_area_under_the_miou_curve_and_the_gain_over_random_match_the_database(ran, report):
    rows = {row[0]: row for row in report.tables["aulc"][1:]}
    assert report.tables["aulc"][0][2] == "AULC of mIoU (mean ± std)"

    def area(points):  # two points: the trapezoid's mean height is the mean of the two
        return (points[0][1] + points[1][1]) / 2

    for strategy in STRATEGIES:
        mean, std = _mean_std([area(ran.miou(strategy, seed)) for seed in SEEDS])
        assert rows[strategy][1:3] == ["2", f"{mean:.4f} ± {std:.4f}"]
    diffs = [area(ran.miou("entropy", s)) - area(ran.miou("random", s)) for s in SEEDS]
    assert rows["entropy"][3] == f"{sum(diffs) / 2:+.4f}" and rows["entropy"][6] == "2"
    assert rows["random"][3] == ""
    assert "area under the mIoU curve" in report.text


def test_the_pixel_balance_of_the_picks_sums_the_seeds(ran, report):
    rows = report.tables["pixel-share"]
    assert rows[0] == ["strategy", "picked in", "images (all seeds)", "background %", "disc %", "square %",
                       "line %", "dot %"]
    assert [r[:3] for r in rows[1:]] == [
        [s, group, str(n)] for s in STRATEGIES
        for group, n in (("seed masks", INITIAL * len(SEEDS)), ("round 1", BATCH * len(SEEDS)),
                         ("round 2", BATCH * len(SEEDS)))]
    assert all(abs(sum(float(v) for v in r[3:]) - 100.0) < 0.3 for r in rows[1:])


def test_timings_per_round_are_the_stored_ones(ran, report):
    rows = {row[0]: row[1:] for row in report.tables["timings-table"][1:]}
    for strategy in STRATEGIES:
        by_round: dict[int, list[dict]] = {}
        for index, timings in ran.query("SELECT r.\"index\", r.timings FROM round r JOIN campaign c "
                                        "ON c.id = r.campaign_id WHERE c.strategy = ?", strategy):
            by_round.setdefault(index, []).append(json.loads(timings))
        # the mean over rounds of each round's mean over seeds
        assert len(rows[strategy]) == 4  # train, evaluate (the yardstick and the temperature), score, select
        for step, cell in zip(("train", "evaluate", "score", "select"), rows[strategy]):
            means = [sum(t[step] for t in ts) / len(ts) for _, ts in sorted(by_round.items()) if step in ts[0]]
            assert cell == (f"{sum(means) / len(means):.2f}" if means else ""), step
        assert any("evaluate" in t for ts in by_round.values() for t in ts)  # active rounds time it


def test_the_report_renders_in_chromium_without_errors(ran, report, browser):
    images = _load(browser, ran.folder / "segtiny.html")
    # every figure drawn, none an empty placeholder
    assert sorted(i["figure"] for i in images) == sorted({
        "learning-curve-miou", "learning-curve-pixel-accuracy", "learning-curve-pixel-ece", "decomposition-comparison",
        "pixel-balance", "timings", *[f"heatmap-{s}-round-2-rank-{k}" for s in STRATEGIES for k in range(1, BATCH + 1)]})
    for image in images:
        assert image["complete"] and image["w"] > 0 and image["h"] > 0 and image["shown"] > 0, image
    assert _errors(browser.events) == []
