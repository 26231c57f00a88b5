"""A round that trains no model says why as it starts, in the numbers and setting names that
decided it (trial F4: a second cold-start round came as a bare table row). Real files, real
SQLite, the round's own steps with the simulated annotator."""

from __future__ import annotations

import logging

import pytest

from activelabel.campaign import campaign_summaries, prepare_campaign
from activelabel.campaign.data import clear_cache
from activelabel.campaign.file import load_campaign_file
from activelabel.storage import open_engine
from test_own_data import campaign_file, make_data
from tests_support_rounds import run_rounds


@pytest.fixture(autouse=True)
def _fresh_data_cache():
    clear_cache()
    yield
    clear_cache()


def _kind_lines(caplog) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records
            if r.name == "activelabel.campaign.steps" and r.getMessage().startswith("Round ")
            and " is " in r.getMessage()]


def test_evaluation_and_each_cold_start_round_say_why_with_the_settings(tmp_path, caplog) -> None:
    make_data(tmp_path, count=60)
    # 5 evaluation samples, then cold starts until 12 pool labels: a batch of 10 leaves round 3
    # another cold start (10 < 12), round 4 is active.
    path = campaign_file(tmp_path, "why", **{"evaluation_size = 20": "evaluation_size = 5",
                                             "# min_labels_to_train = ...": "min_labels_to_train = 12"})
    config, _ = load_campaign_file(path)
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, config)
    with caplog.at_level(logging.INFO, logger="activelabel"):
        run_rounds(engine, campaign_id, 4)

    assert [s.kind for s in campaign_summaries(engine, "why")] == ["evaluation", "cold_start", "cold_start", "active"]
    lines = _kind_lines(caplog)
    assert lines[0] == ("INFO", "Round 1 of 'why' is an evaluation round: 5 of the 5 evaluation samples "
                                "(evaluation_size) are not labeled yet; no model is trained until they are")
    assert lines[1] == ("INFO", "Round 2 of 'why' is a cold start: 0 pool labels < min_labels_to_train 12; "
                                "it picks at random and trains no model (rounds counts it)")
    assert lines[2] == ("WARNING", "Round 3 of 'why' is another cold start: 10 pool labels < min_labels_to_train 12; "
                                   "it picks at random and trains no model (rounds counts it)")
    assert len(lines) == 3  # the active round needs no explanation


def test_unset_threshold_is_named_as_the_batch_size(tmp_path, caplog) -> None:
    make_data(tmp_path, count=40)
    path = campaign_file(tmp_path, "unset", **{"evaluation_size = 20": "evaluation_size = 0"})
    config, _ = load_campaign_file(path)
    assert config.min_labels_to_train is None
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, config)
    with caplog.at_level(logging.INFO, logger="activelabel"):
        run_rounds(engine, campaign_id, 1)
    assert _kind_lines(caplog) == [
        ("INFO", "Round 1 of 'unset' is a cold start: 0 pool labels < min_labels_to_train (unset: the batch_size) 10; "
                 "it picks at random and trains no model (rounds counts it)")]
