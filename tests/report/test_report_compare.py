"""`activelabel compare` then `activelabel report` on a tiny digits experiment (see conftest).

Rows per run, the resume after an interrupted experiment, the same start for every strategy
of a seed, and the HTML report's figures and numbers checked against the database.
"""

from __future__ import annotations

import base64
import json
import sqlite3

from report_tiny import BATCH, COMMON, INITIAL, POOL_SUBSET, ROUND_ROWS, ROUNDS, SEEDS, STRATEGIES, run_cli


def test_every_strategy_and_seed_is_one_campaign_of_the_experiment(tiny_experiment):
    exp = tiny_experiment
    [(experiment_id, config)] = exp.query("SELECT id, config FROM experiment WHERE name = 'tiny'")
    assert json.loads(config)["seeds"] == [0, 1]
    campaigns = exp.query("SELECT name, strategy, experiment_id FROM campaign ORDER BY name")
    assert sorted((n, s) for n, s, _ in campaigns) == sorted(
        (f"tiny-{s}-seed{seed}", s) for s in STRATEGIES for seed in SEEDS)
    assert {e for _, _, e in campaigns} == {experiment_id}
    for name, _, _ in campaigns:
        rounds = exp.query("SELECT r.status, r.kind, r.labeled_count, r.pool_count, r.id FROM round r "
                           "JOIN campaign c ON c.id = r.campaign_id WHERE c.name = ? ORDER BY r.\"index\"", name)
        assert [(s, k, n) for s, k, n, _, _ in rounds] == [
            ("complete", "active", INITIAL), ("complete", "active", INITIAL + BATCH)]
        for _, _, _, pool_count, round_id in rounds:
            # --pool-subset: each active round scores exactly that many pool samples
            assert pool_count == POOL_SUBSET
            assert exp.query("SELECT count(*) FROM score WHERE round_id = ?", round_id) == [(POOL_SUBSET,)]
            assert exp.query("SELECT count(*) FROM selection WHERE round_id = ?", round_id) == [(BATCH,)]
    assert exp.query("SELECT count(*) FROM selection") == [(len(campaigns) * ROUNDS * BATCH,)]
    # the seed labels, then one simulated answer per selected sample
    assert exp.query("SELECT count(*) FROM annotation") == [(len(campaigns) * (INITIAL + ROUNDS * BATCH),)]


def test_a_rerun_continues_the_experiment_without_redoing_finished_campaigns(tiny_experiment):
    exp = tiny_experiment
    assert len(exp.first_rounds) == len(STRATEGIES) * ROUNDS
    assert {row[1] for row in exp.first_rounds} == {f"tiny-{s}-seed0" for s in STRATEGIES}
    now = exp.query(ROUND_ROWS)
    kept = [row for row in now if row[1].endswith("seed0")]
    assert kept == exp.first_rounds  # same round ids, same start and finish times
    assert "2 campaigns already finished" in exp.second_stderr
    # a third run finds everything finished and runs nothing
    again = run_cli("compare", *COMMON, "--seeds", "2", "--database-url", exp.url, cwd=exp.folder)
    assert again.returncode == 0, again.stderr
    assert "4 campaigns already finished" in again.stderr
    assert exp.query(ROUND_ROWS) == now


OUTCOME = ("SELECT c.name, r.\"index\", r.labeled_count, r.test_accuracy, r.test_nll, "
           "(SELECT group_concat(s.uri, ' ') FROM (SELECT s.uri FROM selection x JOIN sample s ON s.id = x.sample_id "
           "WHERE x.round_id = r.id ORDER BY s.uri) AS s) FROM round r JOIN campaign c ON c.id = r.campaign_id "
           "WHERE c.name LIKE '%-seed0' ORDER BY c.name, r.\"index\"")


def test_results_do_not_depend_on_how_many_campaigns_run_at_once(tiny_experiment, tmp_path):
    """Seed 0 ran in this process (--workers 1); run again in two worker processes, its rounds
    reach the same accuracy and NLL and pick the same samples: each campaign's randomness comes
    from its own seeds, not from what else the process ran (docs/compare.md)."""
    exp = tiny_experiment
    url = f"sqlite:///{tmp_path / 'again.db'}"
    again = run_cli("compare", *COMMON, "--seeds", "1", "--workers", "2", "--database-url", url, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "· 2 at once (--workers)" in " ".join(again.stderr.split())
    with sqlite3.connect(tmp_path / "again.db") as connection:
        in_two_processes = connection.execute(OUTCOME).fetchall()
    assert len(in_two_processes) == len(STRATEGIES) * ROUNDS
    assert in_two_processes == exp.query(OUTCOME)


def test_every_strategy_of_a_seed_starts_from_the_same_labels_and_test_split(tiny_experiment):
    exp = tiny_experiment
    for seed in SEEDS:
        seeds_of, tests_of, first_accuracy = {}, {}, {}
        for strategy in STRATEGIES:
            name = f"tiny-{strategy}-seed{seed}"
            seeds_of[strategy] = exp.query(
                "SELECT s.uri FROM annotation a JOIN sample s ON s.id = a.sample_id JOIN campaign c "
                "ON c.id = a.campaign_id WHERE c.name = ? AND a.external_id LIKE 'seed-%' ORDER BY s.uri", name)
            tests_of[strategy] = exp.query(
                "SELECT s.uri FROM sample s JOIN campaign c ON c.id = s.campaign_id "
                "WHERE c.name = ? AND s.split = 'test' ORDER BY s.uri", name)
            first_accuracy[strategy] = exp.query(
                "SELECT r.test_accuracy FROM round r JOIN campaign c ON c.id = r.campaign_id "
                "WHERE c.name = ? AND r.\"index\" = 1", name)
        assert len(seeds_of["random"]) == INITIAL and len(tests_of["random"]) == 359
        assert seeds_of["random"] == seeds_of["entropy"]
        assert tests_of["random"] == tests_of["entropy"]
        # Same labels, same training seed: round 1 trains the same model, even when the two
        # campaigns ran at the same time in two worker processes (seed 1).
        assert first_accuracy["random"] == first_accuracy["entropy"]
    assert seeds_of["random"] != exp.query(
        "SELECT s.uri FROM annotation a JOIN sample s ON s.id = a.sample_id JOIN campaign c "
        "ON c.id = a.campaign_id WHERE c.name = 'tiny-random-seed0' AND a.external_id LIKE 'seed-%' ORDER BY s.uri")


def _first_reaching(points, target):
    return next((n for n, acc in points if acc >= target), None)


def test_the_report_holds_a_learning_curve_image_per_metric(experiment_report):
    _, parser, _, _ = experiment_report
    for metric in ("accuracy", "nll", "ece"):
        [src] = parser.figures[f"learning-curve-{metric}"]
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    for name in ("class-balance", "timings"):
        assert len(parser.figures[name]) == 1
    for name in ("calibration-curves", "decomposition-comparison"):
        assert len(parser.figures[name]) == 1
    # gallery: the 5 picks of the last round, for each strategy
    assert len(parser.images) == 3 + 2 + 2 + 2 * BATCH
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)  # no network


def test_the_labels_to_target_table_matches_the_database(experiment_report):
    _, parser, curves, targets = experiment_report
    rows = parser.tables["labels-to-target"]
    assert rows[0] == ["strategy", *[f"accuracy ≥ {t:g}" for t in targets]]
    by_strategy = {row[0]: row[1:] for row in rows[1:]}
    assert set(by_strategy) == set(STRATEGIES)
    for strategy in STRATEGIES:
        per_seed = [curves[strategy][seed] for seed in SEEDS]
        labels = [n for n, _ in per_seed[0]]
        mean = [(n, sum(c[i][1] for c in per_seed) / len(per_seed)) for i, n in enumerate(labels)]
        for target, cell in zip(targets, by_strategy[strategy]):
            reached = _first_reaching(mean, target)
            seeds = ", ".join("—" if v is None else str(v) for v in (_first_reaching(c, target) for c in per_seed))
            assert cell == f"{'not reached' if reached is None else reached} (seeds: {seeds})"
    # Which cells are reached depends on the tiny models' learning (masks and refinement move it);
    # every cell was checked against the database above. Each is a label count or "not reached".
    cells = [cell for row in by_strategy.values() for cell in row]
    assert all(cell.split(" ")[0].isdigit() or cell.startswith("not reached") for cell in cells)
    assert any(cell.split(" ")[0].isdigit() for cell in cells)


def test_the_aulc_table_gives_the_paired_gain_over_random(experiment_report):
    _, parser, curves, _ = experiment_report
    rows = {row[0]: row for row in parser.tables["aulc"][1:]}

    def area(points):  # two points: the trapezoid's mean height is the mean of the two
        return (points[0][1] + points[1][1]) / 2

    diffs = [area(curves["entropy"][s]) - area(curves["random"][s]) for s in SEEDS]
    assert rows["entropy"][3] == f"{sum(diffs) / 2:+.4f}"
    assert rows["entropy"][6] == "2"
    assert rows["random"][3] == ""  # the baseline has no gain over itself


def test_a_campaign_report_shows_its_curve_and_pool_against_selected_scores(tiny_experiment, campaign_report):
    exp = tiny_experiment
    out, parser = campaign_report
    assert set(parser.figures) >= {"learning-curve-accuracy", "uncertainty-round-1", "uncertainty-round-2", "timings"}
    rounds = parser.tables["rounds"]
    accuracy = exp.query("SELECT r.test_accuracy FROM round r JOIN campaign c ON c.id = r.campaign_id "
                         "WHERE c.name = 'tiny-random-seed1' ORDER BY r.\"index\"")
    assert [row[3] for row in rounds[1:]] == [f"{a:.4f}" for (a,) in accuracy]
    # Its area under the accuracy curve: with two points, the mean of the two accuracies.
    assert parser.tables["aulc"][1] == ["random", f"{INITIAL}–{INITIAL + BATCH}", "2",
                                        f"{(accuracy[0][0] + accuracy[1][0]) / 2:.4f}"]
    # The data behind it, copies and unreadable files counted apart (digits has neither).
    pool, test = (exp.query("SELECT count(*) FROM sample s JOIN campaign c ON c.id = s.campaign_id "
                            f"WHERE c.name = 'tiny-random-seed1' AND s.split = '{split}'")[0][0]
                  for split in ("pool", "test"))
    assert f"Samples: {pool} pool, {test} test · 0 byte-identical copies" in out.read_text(encoding="utf-8")


def test_report_of_an_unknown_name_fails_with_one_line(tiny_experiment):
    result = run_cli("report", "nothing-here", "--database-url", tiny_experiment.url, cwd=tiny_experiment.folder)
    assert result.returncode == 1
    assert "no experiment or campaign named 'nothing-here'" in result.stderr


def test_an_experiment_file_names_the_same_experiment(tiny_experiment):
    exp = tiny_experiment
    before = exp.query(ROUND_ROWS)
    (exp.folder / "tiny.toml").write_text(
        '[experiment]\nname = "tiny"\nstrategies = ["random", "entropy"]\nseeds = [0, 1]\n\n'
        '[campaign]\nrounds = 2\nbatch_size = 5\nepochs = 1\nmc_samples = 2\npool_subset = 300\n'
        'initial_labeled = 495\ndevice = "cpu"\n',
        encoding="utf-8")
    result = run_cli("compare", "tiny.toml", "--database-url", exp.url, cwd=exp.folder)
    assert result.returncode == 0, result.stderr
    assert "4 campaigns already finished" in result.stderr
    assert exp.query(ROUND_ROWS) == before
    (exp.folder / "changed.toml").write_text(
        '[experiment]\nname = "tiny"\nstrategies = ["random"]\nseeds = 1\n\n[campaign]\nrounds = 2\nbatch_size = 6\n'
        'epochs = 1\nmc_samples = 2\npool_subset = 300\ninitial_labeled = 495\ndevice = "cpu"\n', encoding="utf-8")
    refused = run_cli("compare", "changed.toml", "--database-url", exp.url, cwd=exp.folder)
    assert refused.returncode == 1
    assert "batch_size 5 -> 6" in refused.stderr
    (exp.folder / "typo.toml").write_text('[experiment]\nname = "tiny"\nseed = 1\n', encoding="utf-8")
    typo = run_cli("compare", "typo.toml", "--database-url", exp.url, cwd=exp.folder)
    assert typo.returncode == 1 and "unknown key(s) in [experiment]: seed" in typo.stderr


def test_each_round_times_training_apart_from_evaluation_and_the_report_shows_both(tiny_experiment, experiment_report):
    """Trial 17 F6: "train" held the yardstick's measurement and the temperature fit too (40 s for
    5 optimizer steps on MNIST with 10,000 test images). Now "evaluate" is its own step."""
    import sqlite3

    with sqlite3.connect(tiny_experiment.database) as connection:
        stored = [json.loads(t) for (t,) in connection.execute("SELECT timings FROM round")]
    assert stored and all({"train", "evaluate", "score", "select"} <= set(t) for t in stored), stored
    assert all(t["train"] >= 0 and t["evaluate"] > 0 for t in stored)  # every round measured its model
    _, parser, _, _ = experiment_report
    header, *rows = parser.tables["timings-table"]
    assert header == ["strategy", "train (mean s per round)", "evaluate (mean s per round)",
                      "score (mean s per round)", "select (mean s per round)"]
    assert {row[0] for row in rows} == set(STRATEGIES) and all(len(row) == 5 and row[2] for row in rows)
