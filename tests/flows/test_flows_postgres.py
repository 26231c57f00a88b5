"""The same campaign on PostgreSQL, and a PostgreSQL server that goes away mid-round."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import func, select

from activelabel.campaign import CampaignConfig, prepare_campaign
from activelabel.errors import DatabaseUnavailableError
from activelabel.flows import campaign_flow, round_flow
from activelabel.storage import Round, RoundStatus, Sample, SampleSplit, Score, Selection, open_engine, session_scope
from activelabel.storage.database import DATABASE_URL_ENV

pytestmark = pytest.mark.postgres

CONFIG = dict(strategy="entropy", rounds=2, batch_size=6, initial_labeled=12, mc_samples=3, epochs=2, device="cpu")


def test_a_campaign_on_postgres_stores_the_same_rows_as_on_sqlite(private_postgres, tmp_path, monkeypatch):
    def run(url: str) -> list:
        engine = open_engine(url)
        prepare_campaign(engine, CampaignConfig(name="pg-campaign", **CONFIG))
        monkeypatch.setenv(DATABASE_URL_ENV, url)  # the password stays out of flow parameters
        summaries = campaign_flow("pg-campaign", 2)
        assert [s.status for s in summaries] == ["complete", "complete"]
        with session_scope(engine) as session:
            return session.execute(
                select(Round.index, Sample.uri, Selection.rank, Round.model_version)
                .join(Selection, Selection.round_id == Round.id).join(Sample, Sample.id == Selection.sample_id)
                .order_by(Round.index, Selection.rank)
            ).all()

    on_postgres = run(private_postgres.url)
    on_sqlite = run(f"sqlite:///{tmp_path / 'same.db'}")
    assert len(on_postgres) == 12
    assert on_postgres == on_sqlite


def test_database_down_mid_round_gives_a_clear_error_and_the_round_resumes(private_postgres, monkeypatch):
    from activelabel.campaign import steps

    url = private_postgres.url
    engine = open_engine(url)
    prepare_campaign(engine, CampaignConfig(name="outage", **CONFIG))
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    real_score = steps.score_step

    def score_while_the_server_dies(engine, round_id):
        private_postgres.stop()
        real_score(engine, round_id)

    monkeypatch.setattr(steps, "score_step", score_while_the_server_dies)
    with pytest.raises(DatabaseUnavailableError) as info:
        round_flow("outage")
    message = str(info.value)
    assert f"127.0.0.1:{private_postgres.port}/crash_db" in message
    assert "round 1 of campaign 'outage'" in message and "activelabel resume outage" in message
    assert "crash-pw-123" not in message

    private_postgres.start()
    with session_scope(engine) as session:
        # The last committed step survives: training is done, scoring is not.
        assert session.scalar(select(Round.status)) == RoundStatus.scoring
        assert session.scalar(select(func.count()).select_from(Score)) == 0

    monkeypatch.setattr(steps, "score_step", real_score)
    summary = round_flow("outage")
    assert summary.status == "complete" and summary.index == 1
    with session_scope(engine) as session:
        pool = session.scalar(select(func.count()).select_from(Sample).where(Sample.split == SampleSplit.pool))
        assert session.scalar(select(func.count()).select_from(Score)) == pool - 12
        assert session.scalar(select(func.count()).select_from(Selection)) == 6
        assert session.scalar(select(func.count()).select_from(Round)) == 1


def test_wrong_password_names_host_and_database_not_the_password(private_postgres):
    wrong = private_postgres.url.replace("crash-pw-123", "not-the-password")
    with pytest.raises(DatabaseUnavailableError) as info:
        open_engine(wrong)
    message = str(info.value)
    assert f"127.0.0.1:{private_postgres.port}/crash_db" in message
    assert "password authentication failed" in message
    assert "not-the-password" not in message and "crash-pw-123" not in message
