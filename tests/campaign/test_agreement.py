"""Several annotators per task: agreement per round and per annotator, split decisions (no
majority), sync's warning about them and what ``activelabel status`` shows (trial 12, F3).

The campaign (tests_support_agreement) is written by hand into SQLite (rounds, selections, annotations through the
repository functions), so every figure is known here: round 1 (evaluation) holds img0001 answered
7, 7, 1 (agreement 2/3, a majority) and img0056 answered 7, 1, 4 (a split decision resolved as 7,
the first answer); round 2 (cold start) holds img0100 answered 2, 2, 2 and img0101 with two of
its three answers (not resolved).
"""

from __future__ import annotations

import logging
import re

import pytest
from typer.testing import CliRunner

from activelabel import cli
from activelabel.campaign.agreement import SplitWatch, campaign_agreement
from activelabel.storage import open_engine
from activelabel.storage.labels import ResolvedLabel, majority_vote, split_decision
from tests_support_agreement import answer_all, team_campaign
from tests_support_postgres import sqlite_or_postgres_engine


def test_split_decision_is_no_strict_majority() -> None:
    assert not split_decision(majority_vote(["7", "7", "1"]))  # 2 of 3: a majority
    assert split_decision(majority_vote(["7", "1", "4"]))  # three different answers
    assert split_decision(majority_vote(["7", "1"]))  # a 1-1 tie
    assert split_decision(majority_vote(["b", "a", "a", "b"]))  # 2-2
    assert split_decision(majority_vote(["7", "7", "1", "4"]))  # 2 of 4: a plurality, no majority
    assert not split_decision(majority_vote(["7", "7", "7", "4"]))
    assert not split_decision(majority_vote(["2", "2", "2"]))
    assert not split_decision(ResolvedLabel("7", 1, 1.0))  # one vote agrees with itself


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def team(request, tmp_path):
    """(engine, its URL, sample ids) of the campaign, on SQLite and on PostgreSQL (when set up)."""
    with sqlite_or_postgres_engine(request.param, tmp_path / "team.db", "al_agreement_test") as engine:
        yield engine, engine.url.render_as_string(hide_password=False), team_campaign(engine)


def test_agreement_per_round_and_per_annotator(team) -> None:
    engine, _, ids = team
    answer_all(engine, "team", ids)
    figures = campaign_agreement(engine, "team")
    assert figures is not None and figures.needed == 3
    one, two = figures.rounds
    assert (one.index, one.resolved, one.splits, one.evaluation_splits) == (1, 2, 1, 1)
    assert one.agreement == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert one.cells() == ["1", "2", "0.500", "1 (1 evaluation)"]
    # img0101 has 2 of its 3 answers: not resolved, so not counted
    assert (two.resolved, two.agreement, two.splits) == (1, 1.0, 0)
    assert two.cells() == ["2", "1", "1.000", "0"]
    [split] = figures.splits
    assert (split.uri, split.split, split.round_index, split.task) == ("img0056.png", "evaluation", 1, "2")
    assert split.answers == (("alice", "7"), ("bob", "1"), ("carol", "4"))
    assert split.resolved == ResolvedLabel("7", 3, pytest.approx(1 / 3))
    assert split.describe() == "img0056.png (task 2): 7, 1, 4 -> 7"
    # alice: 7 (=7), 7 (=7), 2 (=2); bob: 7, 1 (≠7), 2; carol: 1 (≠7), 4 (≠7), 2
    by_name = {a.annotator: (a.answers, a.agreeing) for a in figures.annotators}
    assert by_name == {"alice": (3, 3), "bob": (3, 2), "carol": (3, 1)}


def test_one_annotator_per_task_has_no_agreement(tmp_path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'solo.db'}")
    ids = team_campaign(engine, "solo", per_task=1)
    assert campaign_agreement(engine, "solo") is None
    watch = SplitWatch.start(engine, ids["campaign"])
    assert watch.known is None and watch.new_splits() == []


def test_sync_warns_once_about_new_split_decisions_naming_the_evaluation_ones(team, caplog) -> None:
    engine, _, ids = team
    log = logging.getLogger("activelabel.campaign.sync")
    watch = SplitWatch.start(engine, ids["campaign"])
    assert watch.known == set()
    answer_all(engine, "team", ids)
    with caplog.at_level(logging.WARNING, logger="activelabel.campaign.sync"):
        messages = watch.warn(log, "team")
    assert messages == [
        "Round 1: 1 sample resolved by a split decision (no label has more than half of the answers; a tie goes "
        "to the first answer's label), 1 of them in the evaluation split (the yardstick every round is measured "
        "on): img0056.png (task 2): 7, 1, 4 -> 7. Have another annotator review it in Label Studio: an edit "
        "there is followed by the next sync. `activelabel status team --round 1` lists it."]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == messages
    # The next sync finds the same split: no second warning. A new split in round 2 is warned about alone.
    again = SplitWatch.start(engine, ids["campaign"])
    assert again.known == {ids["img0056.png"]}
    answer_all(engine, "team", ids, {"img0101.png": ("3", "5", "8")})
    [message] = again.warn(log, "team")
    assert message.startswith("Round 2: 1 sample resolved by a split decision (no label has more than half of the "
                              "answers; a tie goes to the first answer's label): img0101.png (task 4): 3, 5, 8 -> 3.")
    assert "evaluation" not in message


def _status(url: str, *args: str) -> str:
    result = CliRunner().invoke(cli.app, ["status", "team", "--database-url", url, *args], terminal_width=250)
    assert result.exit_code == 0, result.output
    return result.output


def _table(text: str, title_start: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(title_start))
    rows = []
    for line in lines[start + 1:]:
        if "│" in line or "┃" in line:
            rows.append([c.strip() for c in re.split("[│┃]", line)[1:-1]])
        elif rows and not line.strip().startswith(("┡", "└", "├")):
            break
    return rows


def test_status_shows_agreement_per_round_and_the_rounds_split_samples(team) -> None:
    engine, url, ids = team
    answer_all(engine, "team", ids)
    text = _status(url)
    assert _table(text, "Annotators' agreement (3 per task)") == [
        ["round", "resolved", "agreement", "split decisions"],
        ["1", "2", "0.500", "1 (1 evaluation)"],
        ["2", "1", "1.000", "0"],
    ]
    flat = " ".join(text.split())
    assert ("agreement: the mean share of a sample's answers that match its resolved label; split decision: no "
            "label has more than half of the sample's answers (a tie goes to the first answer).") in flat
    assert ("Split decisions stand as labels: `activelabel status team --round N` lists them (round 1); have "
            "another annotator review them in Label Studio (the next sync follows the edit).") in flat
    one = _status(url, "--round", "1")
    assert ("Round 1 · agreement 0.500 over 2 resolved samples (3 annotators per task) · 1 split decision, 1 in "
            "the evaluation split") in " ".join(one.split())
    assert _table(one, "Campaign team · round 1 · split decisions") == [
        ["sample", "task", "split", "answers", "resolved", "agreement"],
        ["img0056.png", "2", "evaluation", "7, 1, 4", "7", "0.333"],
    ]
    two = " ".join(_status(url, "--round", "2").split())
    assert "Round 2 · agreement 1.000 over 1 resolved sample (3 annotators per task) · 0 split decisions" in two
    assert "split decisions (no label" not in two


def test_status_of_one_annotator_per_task_shows_nothing_new(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'solo.db'}"
    engine = open_engine(url)
    ids = team_campaign(engine, "team", per_task=1)
    answer_all(engine, "team", ids)
    text = _status(url)
    assert "agreement" not in text and "split decision" not in text
    assert "agreement" not in _status(url, "--round", "1")
