"""SIGTERM while Prefect's own SIGTERM handler is the active one (a flow runs): never lost.

While a flow runs, Prefect replaces our handler with one that raises its ``TerminationSignal``
(``prefect.utilities.engine.capture_sigterm``) and records nothing in :mod:`activelabel.stop`.
Python swallows that exception when the handler runs inside a weakref callback, as it does ours.
These tests run real flows in real processes: one delivers the SIGTERM from inside a weakref
callback in the flow (deterministic: the handler then runs in that callback), one sends a real
SIGTERM from outside to an `activelabel demo` paused mid-round, and checks the round's row.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from activelabel.storage import Round, open_engine, session_scope
from test_flows_crash import DEMO, EXE, assert_none_left, snapshot

SWALLOWED_IN_A_FLOW = """
import gc, signal, weakref
from prefect import flow
from prefect.utilities.engine import is_prefect_sigterm_handler_installed
from activelabel import cli, progress, stop

seen = []

class Target:
    pass

@flow(name="stop-inside-a-weakref-callback")
def stopped_flow():
    seen.append(f"prefect's handler: {is_prefect_sigterm_handler_installed()}")
    target = Target()
    ref = weakref.ref(target, lambda _ref: signal.raise_signal(signal.SIGTERM))
    del target  # Prefect's handler runs in this callback; Python swallows its TerminationSignal
    gc.collect()
    seen.append("went on")
    progress.reporter().phase("the next step", 1)  # a step boundary honours the recorded stop
    seen.append("not stopped")

def app():
    try:
        stopped_flow()
    finally:
        seen.append(f"ours again: {signal.getsignal(signal.SIGTERM) is stop.handle_signal}")
        print(" | ".join(seen), flush=True)

cli.app = app
cli.main()
"""


def test_sigterm_swallowed_under_prefects_handler_still_stops_the_flow_and_exits_143(tmp_path):
    result = subprocess.run([sys.executable, "-c", SWALLOWED_IN_A_FLOW], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PREFECT_HOME": str(tmp_path / "ph")})
    # Prefect's handler was the active one, its exception was swallowed, the flow went on to its
    # next step boundary and stopped there; our handler is back once the flow has ended.
    assert result.stdout.strip() == "prefect's handler: True | went on | ours again: True", result.stderr[-3000:]
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: stopped by SIGTERM; run the same command again to resume"], result.stderr[-3000:]


def _round_row(folder: Path) -> tuple:
    engine = open_engine(f"sqlite:///{folder / 'activelabel.db'}")
    with session_scope(engine) as session:
        rows = session.execute(select(Round.index, Round.status, Round.failed_step, Round.error)).all()
    engine.dispose()
    return [(index, status.value, step.value if step else None, error) for index, status, step, error in rows]


BUSY_WHEN_THE_FLOW_RECORDS = """
import sys
from sqlalchemy.exc import OperationalError
from activelabel import cli
from activelabel.campaign import steps

real_mark_failed = steps.mark_failed
calls = []

def busy_the_first_time(engine, round_id, error):
    calls.append(round_id)
    if len(calls) == 1:
        raise OperationalError("UPDATE rounds SET status=?", (), Exception("database is locked"))
    return real_mark_failed(engine, round_id, error)

steps.mark_failed = busy_the_first_time
sys.argv = ["activelabel", *sys.argv[1:]]
cli.main()
"""


def _sigterm_in_train(tmp_path: Path, command: list[str]) -> str:
    """Run ``command`` with round 1 held in its train step, send one SIGTERM there; its stderr.
    Asserts the exit (143, no process left, no traceback, the one stop line)."""
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "ACTIVELABEL_PAUSE_AT": f"train:{tmp_path / 'never'}"}
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        cli = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:  # the round is in its train step, inside the flow
            assert cli.poll() is None, (tmp_path / "err").read_text()[-2000:]
            assert time.monotonic() < deadline, (tmp_path / "err").read_text()[-2000:]
            try:
                if any(r.status.value == "training" for r in snapshot(tmp_path)["rounds"]):
                    break
            except Exception:  # database or schema not created yet
                pass
            time.sleep(0.5)
        os.kill(cli.pid, signal.SIGTERM)
        code = cli.wait(timeout=120)  # one signal is enough, wherever it lands
        stderr = (tmp_path / "err").read_text()
        assert code == 128 + signal.SIGTERM, stderr[-2000:]
        assert_none_left(cli.pid)
    finally:
        try:
            os.killpg(cli.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-2000:]
    assert [line for line in stderr.splitlines() if line.startswith("error:")] == [
        "error: stopped by SIGTERM; run the same command again to resume"], stderr[-2000:]
    return stderr


@pytest.mark.slow
def test_sigterm_mid_round_records_stopped_by_sigterm_in_the_round_row(tmp_path):
    """A real SIGTERM while the round trains (inside the flow: Prefect's handler)."""
    stderr = _sigterm_in_train(tmp_path, [EXE, *DEMO, "--rounds", "1"])
    assert "round 1 failed: stopped by SIGTERM" in stderr
    assert _round_row(tmp_path) == [(1, "failed", "training", "stopped by SIGTERM")]


@pytest.mark.slow
def test_a_stop_the_round_flow_could_not_record_is_recorded_as_the_cli_exits(tmp_path):
    """The round flow's own write of the stop fails (its database busy at that moment); the CLI,
    exiting on the stop, records it. The refused write is injected (the first ``mark_failed``
    raises SQLite's "database is locked"): a real lock held exactly while the flow writes, and
    gone when the CLI writes, cannot be arranged without depending on timing."""
    stderr = _sigterm_in_train(tmp_path, [sys.executable, "-c", BUSY_WHEN_THE_FLOW_RECORDS, *DEMO, "--rounds", "1"])
    assert "could not record the failure of round id 1: database is locked" in " ".join(stderr.split()), stderr[-2000:]
    assert _round_row(tmp_path) == [(1, "failed", "training", "stopped by SIGTERM")]
