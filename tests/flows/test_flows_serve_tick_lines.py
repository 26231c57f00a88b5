"""What a serve tick says as it takes up a round: a fresh round "runs", a round a killed serve or
run left at a step "resumes at step S" (the step `resume` names), a round waiting for its labels
"collects labels".

The first test runs a real tick (the scheduled flow, in this process, on the suite's shared
Prefect server) on a round left at step selecting, as a serve killed with its tick leaves it;
the other reads the line for rows in each state of a real database.
"""

from __future__ import annotations

import uuid

from activelabel.campaign import CampaignConfig, prepare_campaign
from activelabel.campaign.lookup import campaign_id
from activelabel.storage import Round, RoundStatus, open_engine, session_scope
from activelabel.storage.models import RoundKind


def _campaign(tmp_path, rounds: int = 2):
    name = f"tick-lines-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 'campaign.db'}"
    engine = open_engine(url)
    prepare_campaign(engine, CampaignConfig(
        name=name, strategy="margin", rounds=rounds, batch_size=5, initial_labeled=0, mc_samples=2, epochs=1,
        device="cpu",
    ))
    return name, url, engine


def _left_round(engine, name: str, index: int, status: RoundStatus, failed_step: RoundStatus | None = None) -> None:
    with session_scope(engine) as session:
        session.add(Round(campaign_id=campaign_id(engine, name), index=index, strategy="random",
                          kind=RoundKind.cold_start, status=status, failed_step=failed_step, timings={}))


def _tick_lines(text: str) -> list[str]:
    return [line[9:] for line in text.splitlines() if line[8:15] == " tick: "]


def test_a_tick_says_it_resumes_a_round_a_killed_serve_left_at_a_step(tmp_path, capsys, prefect_api_url):
    from activelabel.flows.schedule import scheduled_round_flow

    name, url, engine = _campaign(tmp_path)
    _left_round(engine, name, 1, RoundStatus.selecting)  # a serve killed with its tick, mid-round

    summary = scheduled_round_flow(campaign_name=name, max_rounds=2, database_url=url)

    lines = _tick_lines(capsys.readouterr().err)
    assert lines[0] == f"tick: round 1 of campaign '{name}' resumes at step selecting", lines
    assert lines[1].startswith("tick: round 1 complete · cold start batch labeled"), lines
    assert len(lines) == 2 and summary is not None and summary.index == 1
    with session_scope(engine) as session:  # continued, not started again: still one round
        assert [(r.index, r.status) for r in session.query(Round).order_by(Round.index)] == [
            (1, RoundStatus.complete)]


def test_the_start_line_names_a_new_a_continued_a_failed_and_a_waiting_round(tmp_path):
    from activelabel.flows.schedule import round_start_line

    name, _, engine = _campaign(tmp_path, rounds=5)
    cid = campaign_id(engine, name)
    assert round_start_line(engine, cid, name) == f"round 1 of campaign '{name}' runs"

    _left_round(engine, name, 1, RoundStatus.training)
    assert round_start_line(engine, cid, name) == f"round 1 of campaign '{name}' resumes at step training"

    with session_scope(engine) as session:  # a stop marks it failed at its step
        row = session.query(Round).filter_by(index=1).one()
        row.status, row.failed_step = RoundStatus.failed, RoundStatus.scoring
    assert round_start_line(engine, cid, name) == f"round 1 of campaign '{name}' resumes at step scoring"

    with session_scope(engine) as session:
        row = session.query(Round).filter_by(index=1).one()
        row.status, row.failed_step = RoundStatus.waiting_for_labels, None
    assert round_start_line(engine, cid, name) == f"round 1 of campaign '{name}' collects labels"

    with session_scope(engine) as session:
        session.query(Round).filter_by(index=1).one().status = RoundStatus.complete
    assert round_start_line(engine, cid, name) == f"round 2 of campaign '{name}' runs"


def test_activelabels_warnings_in_a_tick_are_tick_lines_and_the_logger_is_restored(capsys, monkeypatch):
    # trial 16 F4: a 500-character "07:44:53.924 | WARNING | activelabel..." line came between two tick lines
    import logging
    import re

    from activelabel.flows.schedule import warnings_as_tick_lines

    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    ours = logging.getLogger("activelabel")
    seen: list[str] = []

    class Root(logging.Handler):  # what Prefect's console handler on the root logger would print
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    root = Root(logging.WARNING)
    logging.getLogger().addHandler(root)
    try:
        with warnings_as_tick_lines():
            logging.getLogger("activelabel.campaign.steps").warning("Round 6: trained on 59 labels, evaluation "
                                                                    "accuracy 0.133 is no better than chance")
            logging.getLogger("activelabel.campaign.steps").info("an INFO line stays quiet")
            lines = capsys.readouterr().err.splitlines()
    finally:
        logging.getLogger().removeHandler(root)
    assert len(lines) == 1 and re.fullmatch(
        r"\d\d:\d\d:\d\d tick: warning: Round 6: trained on 59 labels, evaluation accuracy 0\.133 is no better "
        r"than chance", lines[0]), lines
    assert seen == []  # not in Prefect's format besides
    assert ours.propagate is True and not any(type(h).__name__ == "_TickWarning" for h in ours.handlers)

    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "INFO")  # serve -v: every line in Prefect's format, as asked
    logging.getLogger().addHandler(root)
    try:
        with warnings_as_tick_lines():
            logging.getLogger("activelabel.x").warning("verbose")
            said = capsys.readouterr().err
    finally:
        logging.getLogger().removeHandler(root)
    assert seen == ["verbose"] and "tick:" not in said
