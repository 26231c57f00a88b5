"""`activelabel serve` in a child process for the serve tests: start it, wait for what it says."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

START_BOUND_S = 300  # a serve start on a loaded machine: torch + Prefect imports, the data check
ROUND_BOUND_S = 300  # a tick's flow-run process start and a tiny round
STOP_BOUND_S = 120  # runner shutdown: cancel, SIGTERM to the tick, one DELETE
NEVER = "0 3 1 1 *"  # a cron schedule that never comes during a test
#: A tick's own line on serve's terminal ("HH:MM:SS tick: ..."), not an activelabel warning said
#: during the tick ("HH:MM:SS tick: warning: ...", flows.schedule.warnings_as_tick_lines), which
#: a tiny campaign may add anywhere (e.g. "no better than chance").
TICK_LINE = r"\d\d:\d\d:\d\d tick: (?!(warning|error|critical): )"


def start_serve(name: str, env: dict[str, str], log: Path, *schedule: str) -> subprocess.Popen:
    """``activelabel serve NAME SCHEDULE...`` in its own session, its output in ``log``."""
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "activelabel.cli", "serve", name, *schedule],
                                cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_for(what: str, check, process: subprocess.Popen, log: Path, bound: float):
    """``check()``'s first true value, polled while serve lives; fails with serve's output when
    serve ends first or ``bound`` seconds pass."""
    deadline = time.monotonic() + bound
    while not (found := check()):
        assert process.poll() is None, f"serve ended while waiting for {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} within {bound} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)
    return found


def campaign_paused_in_training(tmp_path: Path, prefix: str, prefect_api_url: str):
    """A 2-round margin campaign on SQLite whose round 2 stops in its train step (round 1, a cold
    start, trains nothing), and the environment serve needs for it: ``(name, engine, env)``."""
    import os
    import uuid

    from activelabel.campaign import CampaignConfig, prepare_campaign
    from activelabel.storage import open_engine

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 'campaign.db'}"
    engine = open_engine(url)
    prepare_campaign(engine, CampaignConfig(
        name=name, strategy="margin", rounds=2, batch_size=5, initial_labeled=0, mc_samples=2, epochs=1,
        device="cpu",
    ))
    env = {**os.environ, "PREFECT_API_URL": prefect_api_url, "ACTIVELABEL_DATABASE_URL": url,
           "PREFECT_HOME": str(tmp_path / "prefect-client"),
           "ACTIVELABEL_PAUSE_AT": f"train:{tmp_path / 'never'}"}
    return name, engine, env
