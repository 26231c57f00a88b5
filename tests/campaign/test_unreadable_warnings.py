"""Trial 15 F8: files found unreadable by the evaluation draw at creation were recorded but not
reported by `run` (only `status` counted them), while files that joined later got one WARNING
each. Every step that records an unreadable file now names it in the same WARNING. Real files,
real SQLite, the round's own steps."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from activelabel.campaign import prepare_campaign
from activelabel.campaign.data import clear_cache
from activelabel.campaign.file import load_campaign_file
from activelabel.campaign.unreadable import warn_unreadable
from activelabel.storage import SampleProblem, open_engine, session_scope
from tests_support_campaignfile import write_campaign_file
from tests_support_owndata import write_manifest, write_unlabeled_pool
from tests_support_rounds import run_rounds

SUFFIX = "; recorded and never sent to annotators"


@pytest.fixture(autouse=True)
def _fresh_data_cache():
    clear_cache()
    yield
    clear_cache()


def _warned(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "cannot be read" in r.getMessage()]


def test_files_the_evaluation_and_cold_start_draws_find_unreadable_are_named(tmp_path: Path, caplog) -> None:
    images = tmp_path / "images"
    truth = write_unlabeled_pool(images, count=8)
    for i in range(8):
        (images / f"bad_{i}.png").write_bytes(f"not an image {i}".encode())  # distinct bytes: no copies
        truth[f"bad_{i}.png"] = "0"
    write_manifest(tmp_path / "truth.csv", truth, base=images)
    config, _ = load_campaign_file(write_campaign_file(
        tmp_path / "own.toml", "own", simulated=True,
        settings={"campaign.batch_size": 4, "campaign.epochs": 1, "campaign.mc_samples": 2,
                  "data.evaluation_size": 4}))
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    with caplog.at_level("WARNING", logger="activelabel"):
        campaign_id = prepare_campaign(engine, config)
    with session_scope(engine) as session:
        at_creation = dict(session.execute(select(SampleProblem.uri, SampleProblem.reason)).all())
    assert at_creation and len(at_creation) < 8  # the draw read bad files before it had 4 good ones (seeded: the same every run)
    assert _warned(caplog) == [
        f"campaign 'own': image {images / uri} cannot be read ({reason}){SUFFIX}" for uri, reason in at_creation.items()
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="activelabel"):
        run_rounds(engine, campaign_id, 2)  # evaluation labels, then the cold-start draw
    with session_scope(engine) as session:
        recorded = dict(session.execute(select(SampleProblem.uri, SampleProblem.reason)).all())
    later = {uri: reason for uri, reason in recorded.items() if uri not in at_creation}
    assert later  # the cold-start draw met some of the rest
    assert sorted(_warned(caplog)) == sorted(
        f"Round {index}: image {images / uri} cannot be read ({reason}){SUFFIX}"
        for uri, reason in later.items() for index in [_round_of(caplog, uri)]
    )


def _round_of(caplog, uri: str) -> int:
    """The round whose warning named ``uri`` (the draw that found it)."""
    for message in _warned(caplog):
        if uri in message:
            return int(message.split(":")[0].removeprefix("Round "))
    raise AssertionError(f"{uri} was recorded but named in no warning")


def test_more_than_ten_files_are_named_then_counted(caplog) -> None:
    log = logging.getLogger("activelabel.test_unreadable")
    problems = [(f"f{i}.png", "Truncated File Read") for i in range(12)]
    with caplog.at_level("WARNING", logger="activelabel"):
        warn_unreadable(log, "Round 3", problems, shown=lambda uri: f"/data/{uri}")
    assert [r.getMessage() for r in caplog.records] == [
        f"Round 3: image /data/f{i}.png cannot be read (Truncated File Read){SUFFIX}" for i in range(10)
    ] + ["Round 3: 2 more images cannot be read (see `activelabel status`)"]
