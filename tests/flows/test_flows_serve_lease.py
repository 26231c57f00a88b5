"""A serve beside another process working on the same campaign: one round at a time, never twice.

Real processes on one SQLite campaign and the suite's shared Prefect server: an `activelabel
watch` holds the campaign's lease in round 2's train step (paused there by
``ACTIVELABEL_PAUSE_AT``) while an `activelabel serve` ticks every 2 s. Each of serve's ticks
skips, naming the watch's process and host from the lease; serve never starts round 2. Once the
watch is let go it completes round 2 and ends, and serve's next tick runs round 3. Each round is
in the database once, complete, and no sample is selected twice.

(A second serve of the same campaign on the same Prefect server is refused at start:
test_flows_serve_ticks.py.)
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import pytest
from sqlalchemy import func, select
from tests_support_serve import TICK_LINE, ROUND_BOUND_S, START_BOUND_S, STOP_BOUND_S
from tests_support_serve import campaign_paused_in_training
from tests_support_serve import start_serve
from tests_support_serve import wait_for

from activelabel.campaign.lookup import campaign_id
from activelabel.storage import CampaignLease, Round, RoundStatus, Selection, session_scope


@pytest.mark.prefect_server
@pytest.mark.slow
def test_serve_skips_its_ticks_while_a_watch_holds_the_lease_and_never_runs_a_round_twice(tmp_path, prefect_api_url):
    name, engine, env = campaign_paused_in_training(tmp_path, "serve-lease", prefect_api_url)
    go = tmp_path / "go"
    watch_env = {**env, "ACTIVELABEL_PAUSE_AT": f"train:{go}"}
    serve_env = {key: value for key, value in env.items() if key != "ACTIVELABEL_PAUSE_AT"}
    watch_log = tmp_path / "watch.log"
    with open(watch_log, "w") as out:
        watching = subprocess.Popen(
            [sys.executable, "-m", "activelabel.cli", "watch", name, "--rounds", "2", "--poll-seconds", "1"],
            cwd=tmp_path, env=watch_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    serve_log = tmp_path / "serve.log"
    serving = None
    cid = campaign_id(engine, name)

    def lease_pid() -> int | None:
        with session_scope(engine) as session:
            lease = session.get(CampaignLease, cid)
            return None if lease is None else lease.pid

    def ticks() -> list[str]:
        return [line[9:] for line in serve_log.read_text().splitlines() if re.match(TICK_LINE, line)]

    skipped = (f"tick: skipped: process {watching.pid} on {socket.gethostname()} (round 2) is still working on "
               f"campaign '{name}'")
    try:
        wait_for("the watch holding the lease in round 2", lambda: lease_pid() == watching.pid, watching, watch_log,
                 START_BOUND_S + ROUND_BOUND_S)
        serving = start_serve(name, serve_env, serve_log, "--interval", "2", "--rounds", "3")
        wait_for("two skipped ticks", lambda: ticks().count(skipped) >= 2, serving, serve_log,
                 START_BOUND_S + ROUND_BOUND_S)
        assert lease_pid() == watching.pid  # still the watch's: serve took nothing
        go.touch()
        assert watching.wait(timeout=ROUND_BOUND_S) == 0, watch_log.read_text()[-3000:]
        wait_for("round 3's summary", lambda: any(t.startswith("tick: round 3 complete") for t in ticks()),
                 serving, serve_log, ROUND_BOUND_S)
        os.killpg(serving.pid, signal.SIGINT)
        assert serving.wait(timeout=STOP_BOUND_S) == 0, serve_log.read_text()[-3000:]
    finally:
        for process in (watching, serving):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    said = ticks()
    ran = said.index(f"tick: round 3 of campaign '{name}' runs")
    # Before round 3: skips only, each naming the watch (a tick may also come after the watch
    # released the lease and before it ended: then it finds round 2 complete and runs round 3).
    assert set(said[:ran]) == {skipped}, said
    assert not any("round 2" in t and "skipped" not in t for t in said), said  # serve never ran round 2
    assert "Traceback" not in serve_log.read_text() + watch_log.read_text()
    with session_scope(engine) as session:
        assert [(r.index, r.status) for r in session.scalars(select(Round).order_by(Round.index))] == [
            (1, RoundStatus.complete), (2, RoundStatus.complete), (3, RoundStatus.complete)]
        assert session.scalar(select(func.count(Selection.id))) == session.scalar(
            select(func.count(func.distinct(Selection.sample_id)))) == 15
        assert session.get(CampaignLease, cid) is None  # released by both
