"""A tick killed with SIGKILL stays RUNNING on the Prefect server; the next serve marks it crashed,
and never a tick whose process still lives.

Real serves on the suite's shared Prefect server (tests/conftest.py). Round 2's tick pauses in its
train step (``ACTIVELABEL_PAUSE_AT``). kill -9 of serve alone leaves that tick alive, finishing its
round: the next serve leaves its run RUNNING. Once the tick's own process is killed too, the serve
after marks its run and its activelabel-round subflow run Crashed, saying so on one line.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess

import pytest
from tests_support_serve import NEVER, ROUND_BOUND_S, START_BOUND_S, STOP_BOUND_S
from tests_support_serve import campaign_paused_in_training
from tests_support_serve import start_serve as _serve
from tests_support_serve import wait_for as _wait_for

from activelabel.storage import Round, RoundStatus, session_scope


def _runs(name: str, flow_name: str) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                                     flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))


def _state(run_id):
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state.type.value


def _stop(process: subprocess.Popen, signum: int) -> int:
    try:
        process.send_signal(signum)
        return process.wait(timeout=STOP_BOUND_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.prefect_server
@pytest.mark.slow
def test_the_next_serve_marks_a_killed_ticks_runs_crashed_and_leaves_a_live_ones_running(tmp_path, prefect_api_url):
    name, engine, env = campaign_paused_in_training(tmp_path, "serve-crash", prefect_api_url)
    tick_pid = None
    first = _serve(name, env, tmp_path / "first.log", "--interval", "2", "--rounds", "2")
    try:
        def round_2_training() -> bool:
            with session_scope(engine) as session:
                row = session.query(Round).filter_by(index=2).one_or_none()
                return row is not None and row.status == RoundStatus.training

        def paused_tick():
            running = [r for r in _runs(name, "activelabel-scheduled-round") if r.state.type.value == "RUNNING"]
            return running[0] if len(running) == 1 and running[0].infrastructure_pid and round_2_training() else None

        tick = _wait_for("round 2's tick in its train step", paused_tick, first, tmp_path / "first.log",
                         START_BOUND_S + 2 * ROUND_BOUND_S)
        host, pid = tick.infrastructure_pid.rsplit(":", 1)
        assert host == socket.gethostname()
        tick_pid = int(pid)
        assert tick_pid != first.pid
        subflows = [r for r in _runs(name, "activelabel-round") if r.parent_task_run_id is not None
                    and r.state.type.value == "RUNNING"]
        assert len(subflows) == 1
        subflow = subflows[0]

        # kill -9 of serve alone: the tick lives on (paused in its round); the next serve leaves its run alone.
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        os.kill(tick_pid, 0)  # still alive
        second = _serve(name, env, tmp_path / "second.log", "--cron", NEVER)
        try:
            _wait_for("the serving line", lambda: "Serving campaign" in (tmp_path / "second.log").read_text(),
                      second, tmp_path / "second.log", START_BOUND_S)
            said = (tmp_path / "second.log").read_text()
            assert f"Deleted the deployment activelabel-scheduled-round/{name} and " in said, said
            assert "crashed" not in said, said
            assert (_state(tick.id), _state(subflow.id)) == ("RUNNING", "RUNNING")
            # Now the tick itself dies (as with kill -9 of serve's process group).
            os.kill(tick_pid, signal.SIGKILL)
            assert _stop(second, signal.SIGTERM) == 0, (tmp_path / "second.log").read_text()[-3000:]
        finally:
            if second.poll() is None:
                os.killpg(second.pid, signal.SIGKILL)
                second.wait()
        assert (_state(tick.id), _state(subflow.id)) == ("RUNNING", "RUNNING")  # Prefect never finds out

        # The next serve marks both crashed, on one line; nothing else is touched.
        third = _serve(name, env, tmp_path / "third.log", "--cron", NEVER)
        try:
            _wait_for("the serving line", lambda: "Serving campaign" in (tmp_path / "third.log").read_text(),
                      third, tmp_path / "third.log", START_BOUND_S)
            lines = (tmp_path / "third.log").read_text().splitlines()
            assert f"Marked 1 run a killed serve left running as crashed (its process is gone) on the Prefect " \
                   f"server (campaign '{name}')" in lines, lines
            assert (_state(tick.id), _state(subflow.id)) == ("CRASHED", "CRASHED")
            completed = [r for r in _runs(name, "activelabel-scheduled-round") if r.id != tick.id]
            assert all(r.state.type.value != "CRASHED" for r in completed)  # round 1's tick kept its state
            assert _stop(third, signal.SIGTERM) == 0, (tmp_path / "third.log").read_text()[-3000:]
        finally:
            if third.poll() is None:
                os.killpg(third.pid, signal.SIGKILL)
                third.wait()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
        if tick_pid is not None:
            try:
                os.kill(tick_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    # The round itself is as the kill left it: the database, not Prefect, says where it stands.
    with session_scope(engine) as session:
        assert session.query(Round).filter_by(index=2).one().status == RoundStatus.training
