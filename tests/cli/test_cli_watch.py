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
    assert watched.stderr.strip().splitlines()[-1] == (
        "Campaign 'w': 1 of 1 rounds complete, so watch ends; for more, raise `rounds` in the campaign file "
        "or pass --rounds N")
    engine = open_engine(f"sqlite:///{tmp_path / 'activelabel.db'}")
    with session_scope(engine) as session:
        assert session.scalars(select(Round.status).order_by(Round.index)).all() == [RoundStatus.complete]
    helped = run_cli("watch", "--help", cwd=tmp_path)
    assert "Default: the campaign's rounds setting" in " ".join(helped.stdout.split())


def test_watch_says_why_and_exits_0_once_a_stopping_rule_stopped_the_campaign(tmp_path):
    """A label budget spent by the first (cold-start) round: `run` stops there, and `watch`,
    asked for 5 rounds, says why instead of polling for a round that never starts."""
    import subprocess

    from tests_support_campaignfile import write_campaign_file
    from tests_support_owndata import write_manifest, write_unlabeled_pool

    truth = write_unlabeled_pool(tmp_path / "images", count=30)
    write_manifest(tmp_path / "truth.csv", truth, base=tmp_path / "images")
    write_campaign_file(tmp_path / "own.toml", "own", simulated=True, labels=sorted(set(truth.values())), settings={
        "campaign.batch_size": 10, "data.evaluation_size": 0, "stop.label_budget": 10})
    ran = run_cli("run", "own.toml", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    try:
        watched = run_cli("watch", "own.toml", "--rounds", "5", "--poll-seconds", "1", cwd=tmp_path)
    except subprocess.TimeoutExpired:
        raise AssertionError("watch kept polling a campaign stopped by its label budget") from None
    assert watched.returncode == 0, watched.stderr[-2000:]
    said = " ".join(watched.stderr.split())
    assert ("Stopped watching 'own': the campaign stopped (label budget reached: 10 of 10 labels spent) "
            "with 1 of 5 rounds complete") in said
    engine = open_engine(f"sqlite:///{tmp_path / 'activelabel.db'}")  # the file's default database
    with session_scope(engine) as session:
        assert session.scalars(select(Round.status).order_by(Round.index)).all() == [RoundStatus.complete]
