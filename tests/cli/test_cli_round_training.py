"""`activelabel status` and the report show what a round's training ran (round.training), and
nothing for rounds that stored none (older rounds: NULL). One real tiny digits round."""

from __future__ import annotations

import re
import sqlite3

import pytest
from typer.testing import CliRunner

from activelabel.campaign import CampaignConfig, prepare_campaign
from activelabel.campaign.training_terms import COLUMNS_NOTE
from activelabel.cli import app
from activelabel.report.build import write_report
from activelabel.storage import open_engine
from tests_support_rounds import run_round

TRAINED = ("Round 1 · Training: 200 epochs (the campaign sets 1; raised to take at least 200 optimizer steps), "
           "200 optimizer steps per model in batches of 32, on 10 labels; Adam, learning rate 0.001, weight "
           "decay 0.0001; recipe default, 1 model.")


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    folder = tmp_path_factory.mktemp("round-training")
    engine = open_engine(f"sqlite:///{folder / 'al.db'}")
    config = CampaignConfig(name="trained", rounds=1, batch_size=5, initial_labeled=10, mc_samples=2, epochs=1,
                            device="cpu")
    run_round(engine, prepare_campaign(engine, config))
    engine.dispose()
    return folder / "al.db"


def _status(database, *extra: str) -> str:
    result = CliRunner().invoke(app, ["status", "trained", "--database-url", f"sqlite:///{database}", *extra],
                                terminal_width=250)
    assert result.exit_code == 0, result.output
    return result.output


def _rounds_table(html: str) -> list[list[str]]:
    table = re.search(r'<table id="rounds">(.*?)</table>', html, re.S).group(1)
    return [re.findall(r"<t[hd]>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]


def _report(database, folder) -> str:
    engine = open_engine(f"sqlite:///{database}")
    try:
        return write_report(engine, "trained", folder / "report.html").path.read_text()
    finally:
        engine.dispose()


def test_status_and_report_show_the_epochs_and_steps_a_round_ran(database, tmp_path):
    table = _status(database)
    header = next(line for line in table.splitlines() if "round" in line and "status" in line)
    assert header.split("┃")[1:-1][-1].strip() == "epochs"
    row = next(line for line in table.splitlines() if line.startswith("│") and "complete" in line)
    assert row.split("│")[-2].strip() == "200"
    assert TRAINED in " ".join(_status(database, "--round", "1").split())

    rows = _rounds_table(_report(database, tmp_path))
    assert rows[0][:8] == ["round", "kind", "trained on", "accuracy", "NLL", "ECE", "epochs", "steps"]
    assert rows[1][:3] == ["1", "active", "10"] and rows[1][6:8] == ["200", "200"]
    assert COLUMNS_NOTE.split(";")[0] in _report(database, tmp_path)


def test_a_round_stored_before_the_column_shows_nothing(database, tmp_path):
    older = tmp_path / "older.db"
    with sqlite3.connect(database) as source, sqlite3.connect(older) as copy:
        source.backup(copy)
        copy.execute("UPDATE round SET training = NULL")
    table = _status(older)
    assert "epochs" not in table and "complete" in table
    detail = " ".join(_status(older, "--round", "1").split())
    assert "Training:" not in detail and "pool uncertainty" in detail  # the rest of the detail stays
    rows = _rounds_table(_report(older, tmp_path))
    assert rows[0][6:8] == ["epochs", "steps"] and rows[1][6:8] == ["", ""]


def test_a_round_stopped_in_training_says_it_has_not_scored_yet(database, tmp_path):
    """trial 13 F2: `status --round N` of a round stopped (Ctrl-C) in its train step said it
    "scored the pool without a model" and "no calibration stored": it has simply not got there."""
    import signal

    from activelabel import stop
    from activelabel.campaign import steps
    from activelabel.campaign.lookup import campaign_id

    copy = tmp_path / "stopped.db"
    with sqlite3.connect(database) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    engine = open_engine(f"sqlite:///{copy}")
    round_id = steps.start_round(engine, campaign_id(engine, "trained"))  # round 2, at step training
    steps.mark_failed(engine, round_id, stop.Stopped(signal.SIGINT))  # what the flow records for a Ctrl-C
    engine.dispose()
    detail = " ".join(_status(copy, "--round", "2").split())
    assert ("Round 2 (active) has not scored the pool yet (stopped by Ctrl-C at step training; it resumes there): "
            "no uncertainty to show.") in detail
    assert "without a model" not in detail
    assert "Calibration: none this round — the round has not trained its model yet." in detail
