"""Stopping rules on hand-made rounds, and the label budget through real rounds."""

from __future__ import annotations

from sqlalchemy import func, select

from activelabel.campaign import prepare_campaign
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import clear_cache
from activelabel.campaign.file import load_campaign_file
from activelabel.campaign.stopping import POOL_EXHAUSTED, check_stop, stop_reason
from activelabel.storage import Round, RoundKind, RoundStatus, Selection, open_engine, session_scope
from test_own_data import campaign_file, make_data
from tests_support_rounds import run_rounds


def rounds(*entries) -> list[Round]:
    """Complete active rounds from (test accuracy, mean pool entropy) pairs."""
    return [Round(index=i + 1, kind=RoundKind.active, status=RoundStatus.complete, test_accuracy=a,
                  mean_pool_entropy=h, strategy="bald") for i, (a, h) in enumerate(entries)]


def config(**rules) -> CampaignConfig:
    return CampaignConfig(name="stop", **rules)


def test_no_rule_no_stop() -> None:
    assert stop_reason(config(), rounds((0.9, 0.5), (0.99, 0.5)), labels_spent=10_000) is None


def test_label_budget() -> None:
    assert stop_reason(config(label_budget=100), rounds((0.5, 1.0)), labels_spent=99) is None
    assert stop_reason(config(label_budget=100), rounds((0.5, 1.0)), labels_spent=100) == (
        "label budget reached: 100 of 100 labels spent")


def test_target_accuracy_reads_the_newest_active_round() -> None:
    rule = config(target_accuracy=0.9)
    assert stop_reason(rule, rounds((0.95, 1.0), (0.85, 0.9)), 0) is None
    assert stop_reason(rule, rounds((0.85, 1.0), (0.9, 0.9)), 0) == "target accuracy reached: 0.900 >= 0.900 in round 2"


def test_plateau_needs_every_change_in_the_window_below_the_threshold() -> None:
    rule = config(plateau_threshold=0.05, plateau_rounds=3)
    # Changes 0.3, 0.04, 0.01, 0.02: the last three are below 0.05.
    stopped = stop_reason(rule, rounds((0.5, 1.0), (0.6, 0.7), (0.7, 0.66), (0.7, 0.65), (0.7, 0.67)), 0)
    assert stopped.startswith("uncertainty plateau") and "(largest change 0.0400)" in stopped
    # Only three rounds: two changes, not enough to judge three.
    assert stop_reason(rule, rounds((0.5, 1.0), (0.6, 0.99), (0.6, 0.98)), 0) is None
    # A jump inside the window.
    assert stop_reason(rule, rounds((0.5, 1.0), (0.6, 0.99), (0.6, 0.5), (0.6, 0.49)), 0) is None


def test_budget_cuts_the_last_batch_and_stops_the_campaign(tmp_path) -> None:
    clear_cache()
    make_data(tmp_path, count=60)
    path = campaign_file(tmp_path, **{"evaluation_size = 20": "evaluation_size = 0",
                                      "# label_budget = ...": "label_budget = 25"})
    cfg, _ = load_campaign_file(path)
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, cfg)
    run_rounds(engine, campaign_id, 2)
    assert check_stop(engine, campaign_id) is None
    run_rounds(engine, campaign_id, 1)
    with session_scope(engine) as session:
        sizes = [len(list(session.scalars(select(Selection).where(Selection.round_id == r.id))))
                 for r in session.scalars(select(Round).order_by(Round.index))]
    assert sizes == [10, 10, 5]  # the third batch is cut to the budget
    reason = check_stop(engine, campaign_id)
    assert reason == "label budget reached: 25 of 25 labels spent"
    with session_scope(engine) as session:
        assert session.scalar(select(Round.stop_reason).where(Round.index == 3)) == reason


def test_reaching_the_target_spends_no_further_batch(tmp_path) -> None:
    clear_cache()
    truth = make_data(tmp_path, count=60)
    from tests_support_owndata import write_manifest

    write_manifest(tmp_path / "seeds.csv", dict(sorted(truth.items())[:20]), base=tmp_path / "images")
    path = campaign_file(tmp_path, **{"evaluation_size = 20": "evaluation_size = 10",
                                      "# labeled = ...": 'labeled = "seeds.csv"',
                                      "# target_accuracy = ...": "target_accuracy = 0.01"})
    cfg, _ = load_campaign_file(path)
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, cfg)
    run_rounds(engine, campaign_id, 2)  # the evaluation round, then an active round that hits the target
    with session_scope(engine) as session:
        active = session.scalar(select(Round).where(Round.index == 2))
        assert active.kind == RoundKind.active and active.status == RoundStatus.complete
        assert active.test_accuracy >= 0.01
        assert session.scalar(select(func.count()).select_from(Selection).where(Selection.round_id == active.id)) == 0
    assert check_stop(engine, campaign_id).startswith("target accuracy reached")


def test_an_exhausted_pool_stops_the_campaign_and_new_files_continue_it(tmp_path, caplog) -> None:
    clear_cache()
    truth = make_data(tmp_path, count=25)
    path = campaign_file(tmp_path, **{"evaluation_size = 20": "evaluation_size = 0"})
    cfg, _ = load_campaign_file(path)
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, cfg)
    run_rounds(engine, campaign_id, 2)
    assert check_stop(engine, campaign_id) is None  # 5 pool samples are left
    with caplog.at_level("WARNING", logger="activelabel"):
        run_rounds(engine, campaign_id, 1)
    short = [r.getMessage() for r in caplog.records if "left to select" in r.getMessage()]
    assert short == ["Round 3: the pool has only 5 samples left to select, fewer than the batch of 10; "
                     "all 5 are selected"]
    with session_scope(engine) as session:
        sizes = [len(list(session.scalars(select(Selection).where(Selection.round_id == r.id))))
                 for r in session.scalars(select(Round).order_by(Round.index))]
    assert sizes == [10, 10, 5]
    assert check_stop(engine, campaign_id) == POOL_EXHAUSTED
    with session_scope(engine) as session:
        assert session.scalar(select(Round.stop_reason).where(Round.index == 3)) == POOL_EXHAUSTED
        assert session.scalar(select(func.count()).select_from(Round)) == 3

    # New files in the pool folder: exhaustion is evaluated afresh, the campaign goes on.
    from tests_support_owndata import write_manifest, write_unlabeled_pool

    more = write_unlabeled_pool(tmp_path / "images" / "more", count=4, seed=7)
    write_manifest(tmp_path / "truth.csv", {**truth, **{f"more/{k}": v for k, v in more.items()}},
                   base=tmp_path / "images")
    assert check_stop(engine, campaign_id) is None
    with session_scope(engine) as session:
        assert session.scalar(select(Round.stop_reason).where(Round.index == 3)) is None
    run_rounds(engine, campaign_id, 1)
    with session_scope(engine) as session:
        last = session.scalar(select(Round).where(Round.index == 4))
        assert last.status == RoundStatus.complete
        assert session.scalar(select(func.count()).select_from(Selection).where(Selection.round_id == last.id)) == 4
    assert check_stop(engine, campaign_id) == POOL_EXHAUSTED


def test_the_campaign_flow_runs_no_empty_round_once_the_pool_is_exhausted(tmp_path) -> None:
    from activelabel.flows import campaign_flow

    clear_cache()
    make_data(tmp_path, count=25)
    cfg, _ = load_campaign_file(campaign_file(tmp_path, **{"evaluation_size = 20": "evaluation_size = 0"}))
    url = f"sqlite:///{tmp_path}/al.db"
    engine = open_engine(url)
    prepare_campaign(engine, cfg)
    summaries = campaign_flow(cfg.name, 6, database_url=url)  # asks for 6 rounds; the pool holds 3 batches
    assert [(s.index, s.status) for s in summaries] == [(1, "complete"), (2, "complete"), (3, "complete")]
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Round)) == 3
        assert session.scalar(select(Round.stop_reason).where(Round.index == 3)) == POOL_EXHAUSTED
    assert campaign_flow(cfg.name, 6, database_url=url) == []  # a second run stops before any round


def test_one_round_of_a_growing_pool_lists_the_folder_once(tmp_path, monkeypatch) -> None:
    """The stop check, the join of new files and the data refresh before a round read one
    listing; the next round (and any check outside a round) lists afresh."""
    import activelabel.campaign.data as data_module
    from activelabel.flows import campaign_flow
    from tests_support_owndata import write_manifest, write_unlabeled_pool

    clear_cache()
    truth = make_data(tmp_path, count=25)
    cfg, _ = load_campaign_file(campaign_file(tmp_path, **{"evaluation_size = 20": "evaluation_size = 0"}))
    url = f"sqlite:///{tmp_path}/al.db"
    engine = open_engine(url)
    prepare_campaign(engine, cfg)
    assert len(campaign_flow(cfg.name, 6, database_url=url)) == 3  # the pool is exhausted after 3 batches
    more = write_unlabeled_pool(tmp_path / "images" / "more", count=4, seed=7)
    write_manifest(tmp_path / "truth.csv", {**truth, **{f"more/{k}": v for k, v in more.items()}},
                   base=tmp_path / "images")

    walked: list[str] = []
    real_walk = data_module._walk_pool

    def counted_walk(pool, labels):
        walked.append(pool)
        return real_walk(pool, labels)

    monkeypatch.setattr(data_module, "_walk_pool", counted_walk)
    summaries = campaign_flow(cfg.name, 6, database_url=url)
    assert [(s.index, s.status) for s in summaries] == [(4, "complete")]
    # One listing for round 4 (its stop check, the join of the 4 new files and the refresh of
    # the cached data: three walks before), one for the check that stops the campaign after it.
    assert walked == [str(tmp_path / "images")] * 2
    with session_scope(engine) as session:
        last = session.scalar(select(Round).where(Round.index == 4))
        assert session.scalar(select(func.count()).select_from(Selection).where(Selection.round_id == last.id)) == 4
    # Outside a round nothing is kept: each check lists the folder as it is now.
    assert check_stop(engine, campaign_id=last.campaign_id) == POOL_EXHAUSTED
    assert check_stop(engine, campaign_id=last.campaign_id) == POOL_EXHAUSTED
    assert len(walked) == 4
