"""A campaign advanced by a Prefect schedule: a real Prefect server, a real `activelabel serve`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from activelabel.campaign import CampaignConfig, prepare_campaign
from activelabel.storage import Round, RoundStatus, open_engine, session_scope

BIN = Path(sys.executable).parent


@pytest.fixture
def prefect_server(prefect_api_url):
    """The suite's shared `prefect server start` (tests/conftest.py): its API URL."""
    return prefect_api_url


@pytest.mark.prefect_server
@pytest.mark.slow
def test_serve_advances_one_round_per_tick_and_stops_at_the_target(prefect_server, tmp_path):
    url = f"sqlite:///{tmp_path / 'scheduled.db'}"
    engine = open_engine(url)
    prepare_campaign(engine, CampaignConfig(
        name="nightly", strategy="margin", rounds=2, batch_size=5, initial_labeled=10,
        mc_samples=2, epochs=2, device="cpu",
    ))
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "ACTIVELABEL_DATABASE_URL": url,
           "PREFECT_HOME": str(tmp_path / "prefect-client")}
    with open(tmp_path / "serve.log", "w") as log:
        serving = subprocess.Popen(
            [str(BIN / "activelabel"), "serve", "nightly", "--interval", "3", "--rounds", "2"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def statuses() -> list[RoundStatus]:
        with session_scope(engine) as session:
            return list(session.scalars(select(Round.status).order_by(Round.index)))

    try:
        deadline = time.monotonic() + 240
        while statuses() != [RoundStatus.complete, RoundStatus.complete]:
            assert serving.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(1)
        time.sleep(8)  # more ticks pass: the campaign has its rounds, nothing is added
        assert statuses() == [RoundStatus.complete, RoundStatus.complete]
        # SIGTERM: the stop line says the campaign has its rounds (no "rounds continue with")
        serving.send_signal(signal.SIGTERM)
        assert serving.wait(timeout=120) == 0, (tmp_path / "serve.log").read_text()[-3000:]
    finally:
        if serving.poll() is None:
            os.killpg(serving.pid, signal.SIGKILL)
            serving.wait()
    text = (tmp_path / "serve.log").read_text()
    assert "activelabel-scheduled-round/nightly" in text
    assert text.splitlines()[-1] == (
        "serve stopped by SIGTERM: the schedule of campaign 'nightly' is removed from the Prefect server; "
        "campaign 'nightly' has its 2 rounds; for more, raise `rounds` in the campaign file or pass --rounds N: "
        "`activelabel serve nightly --interval 3 --rounds 3`"), text[-3000:]


def test_serve_without_a_prefect_server_or_schedule_is_a_clear_error(tmp_path, monkeypatch):
    from activelabel.errors import ConfigError
    from activelabel.flows.schedule import serve_campaign

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(ConfigError, match="exactly one of --interval"):
        serve_campaign("x", max_rounds=1)
    with pytest.raises(ConfigError, match="exactly one of --interval"):
        serve_campaign("x", max_rounds=1, interval=5, cron="* * * * *")
    with pytest.raises(ConfigError, match="schedules need a Prefect server"):
        serve_campaign("x", max_rounds=1, interval=5)
