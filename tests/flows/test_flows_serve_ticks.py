"""What a running `activelabel serve` shows and refuses, on the suite's shared Prefect server.

One real serve, ticking every 2 s: a second serve of the campaign refuses at start naming the
first (process id, host) and leaves its deployment alone; each tick says on the terminal when
its round starts and how it ended; Ctrl-C to serve's process group (as a terminal sends it) while a
tick is mid-round (paused in its train step by ``ACTIVELABEL_PAUSE_AT``) leaves the tick's process
quiet (no traceback) and reaches it as the runner's SIGTERM, and the round's
stored reason says serve was stopped (Ctrl-C) and that the next serve or resume continues it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import pytest
from tests_support_serve import TICK_LINE, NEVER, ROUND_BOUND_S, START_BOUND_S, STOP_BOUND_S
from tests_support_serve import campaign_paused_in_training
from tests_support_serve import start_serve as _serve
from tests_support_serve import wait_for as _wait_for

from activelabel.storage import Round, RoundStatus, session_scope
from activelabel.campaign.lookup import campaign_id
from activelabel.storage.lease import live_holder

def _deployment_id(name: str):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(f"activelabel-scheduled-round/{name}").id


@pytest.mark.prefect_server
@pytest.mark.slow
def test_serve_says_each_tick_refuses_a_second_serve_and_records_a_ctrl_c_mid_round(tmp_path, prefect_api_url):
    name, engine, env = campaign_paused_in_training(tmp_path, "serve-ticks", prefect_api_url)
    log = tmp_path / "serve.log"
    serving = _serve(name, env, log, "--interval", "2", "--rounds", "2")
    try:
        _wait_for("the serving line", lambda: "Serving campaign" in log.read_text(), serving, log, START_BOUND_S)
        served = _deployment_id(name)

        # A second serve refuses at start, on one line naming the first; the first's deployment stays.
        second = subprocess.run([sys.executable, "-m", "activelabel.cli", "serve", name, "--cron", NEVER],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=START_BOUND_S)
        assert second.returncode == 1, second.stderr[-3000:]
        said = " ".join(second.stderr.split())
        assert said.startswith(f"error: campaign '{name}' is already served by process {serving.pid} on "
                               f"{socket.gethostname()} (the Prefect deployment activelabel-scheduled-round/{name})"), said
        assert said.count("error:") == 1
        assert _deployment_id(name) == served and serving.poll() is None

        # Each tick says when its round starts and how it ended, time-stamped, without Prefect's lines.
        def ticks() -> list[str]:
            return [line for line in log.read_text().splitlines() if re.match(TICK_LINE, line)]

        _wait_for("round 1's summary", lambda: any("tick: round 1 complete · cold start batch labeled" in t
                                                    for t in ticks()), serving, log, ROUND_BOUND_S)
        def round_2_started() -> bool:  # its row exists: a stop from here on is recorded on it
            with session_scope(engine) as session:
                row = session.query(Round).filter_by(index=2).one_or_none()
                return row is not None and row.status == RoundStatus.training

        _wait_for("round 2 in its train step", lambda: any(f"tick: round 2 of campaign '{name}' runs" in t
                                                          for t in ticks()) and live_holder(engine, campaign_id(engine, name)) is not None
                  and round_2_started(), serving, log, ROUND_BOUND_S)
        assert [t[9:] for t in ticks()] == [
            f"tick: round 1 of campaign '{name}' runs", ticks()[1][9:], f"tick: round 2 of campaign '{name}' runs"]
        assert ticks()[1].startswith(ticks()[1][:9] + "tick: round 1 complete · cold start batch labeled · ")

        # Ctrl-C mid-round, as a terminal sends it (to the whole process group, the tick's process
        # included): exit 130 with the resume hint, no traceback from the tick; the stored reason
        # says what happened.
        os.killpg(serving.pid, signal.SIGINT)
        assert serving.wait(timeout=STOP_BOUND_S) == 130, log.read_text()[-3000:]
    finally:
        if serving.poll() is None:
            os.killpg(serving.pid, signal.SIGKILL)
            serving.wait()
    lines = log.read_text().splitlines()
    assert "Traceback" not in log.read_text() and "KeyboardInterrupt" not in log.read_text(), lines[-40:]
    assert lines[-1] == "error: stopped by Ctrl-C; run the same command again to resume", lines[-5:]
    assert lines[-2].startswith(f"serve stopped by Ctrl-C: the schedule of campaign '{name}' is removed from "
                                "the Prefect server; round 2 at step training was interrupted; rounds continue with "
                                f"`activelabel serve {name} --interval 2 --rounds 2`"), lines[-5:]
    with session_scope(engine) as session:
        last = session.query(Round).filter_by(index=2).one()
        assert (last.status, last.failed_step) == (RoundStatus.failed, RoundStatus.training)
        assert last.error == (
            "stopped because serve was stopped (Ctrl-C): Prefect's runner ended the tick running it (stopped by "
            "SIGTERM); the next `activelabel serve` (or `activelabel resume`) continues it from this step")
    from activelabel.campaign.summary import unfinished_round

    assert unfinished_round(engine, name).describe(name) == (
        f"Round 2 was stopped at step training (the error column says how; its status reads failed until it "
        f"runs again); `activelabel resume {name}` continues it from that step.")
    # Nothing of Prefect's per-run logging (a busy machine may add a warning of its own: not asserted).
    unexpected = [line for line in lines if line not in ticks() and not line.startswith(("Serving campaign",))]
    assert not [line for line in unexpected if "Crash detected" in line or "Task run" in line or "Flow run" in line], unexpected
