"""`activelabel watch` without --rounds stops at the campaign's own rounds setting (it once
defaulted to 10 and started an eleventh-hour round 3 on a campaign set to 2)."""

from __future__ import annotations

from sqlalchemy import select

from activelabel.storage import Round, RoundStatus, open_engine, session_scope

from test_cli import run_cli


def test_watch_stops_at_the_campaigns_rounds_setting(tmp_path):
    done = run_cli("demo", "--campaign", "w", "--rounds", "1", "--batch-size", "8", "--initial-labeled", "16",
                   "--mc-samples", "2", "--epochs", "1", "--strategy", "entropy", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    watched = run_cli("watch", "w", "--poll-seconds", "1", cwd=tmp_path)
    assert watched.returncode == 0, watched.stderr[-2000:]
    engine = open_engine(f"sqlite:///{tmp_path / 'activelabel.db'}")
    with session_scope(engine) as session:
        assert session.scalars(select(Round.status).order_by(Round.index)).all() == [RoundStatus.complete]
    helped = run_cli("watch", "--help", cwd=tmp_path)
    assert "Default: the campaign's rounds setting" in " ".join(helped.stdout.split())
