"""A campaign advanced by a Prefect schedule: a real Prefect server, a real `activelabel serve`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from activelabel.campaign import CampaignConfig, prepare_campaign
from activelabel.storage import Round, RoundStatus, open_engine, session_scope

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def prefect_server(tmp_path):
    """`prefect server start` on a free loopback port with its own home; its API URL."""
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-server"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = open(tmp_path / "prefect-server.log", "w")
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            log.close()
            pytest.fail("Prefect server did not start:\n" + (tmp_path / "prefect-server.log").read_text()[-3000:])
        time.sleep(0.5)
    yield url
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
    log.close()


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
    finally:
        os.killpg(serving.pid, signal.SIGKILL)
        serving.wait()
    assert "activelabel-scheduled-round/nightly" in (tmp_path / "serve.log").read_text()


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
