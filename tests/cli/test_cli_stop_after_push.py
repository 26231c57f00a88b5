"""Ctrl-C just after a round was pushed cut nothing: the CLI says the round waits for labels,
not that it failed (trial 15, F6: "round 5 failed: stopped by Ctrl-C" while the database kept
round 5 waiting for labels with all its tasks out). The exit status stays 130: the command was
still interrupted.

A real `activelabel demo` process and a real SIGINT: ``ACTIVELABEL_PAUSE_AT=sync:...`` holds the
round in its sync step, after the push moved it to ``waiting_for_labels``, which is where the
trial's Ctrl-C landed (its own timing, 0.1 s after the status changed, cannot be reproduced
deterministically).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from sqlalchemy import select

from activelabel.storage import Round, RoundStatus, Selection, open_engine, session_scope

from test_cli import EXE

BOUND_S = 300  # the CLI's start and a cold-start round's push on a loaded machine


def _rounds(engine) -> list[tuple]:
    with session_scope(engine) as session:
        return [tuple(r) for r in session.execute(
            select(Round.index, Round.status, Round.failed_step, Round.error).order_by(Round.index))]


def test_ctrl_c_once_the_round_waits_for_labels_says_so_without_failed(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200", "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "ACTIVELABEL_PAUSE_AT": f"sync:{tmp_path / 'never'}"}
    err = tmp_path / "err"
    with open(err, "w") as out:
        cli = subprocess.Popen([EXE, "demo", "--campaign", "pushed", "--rounds", "1", "--batch-size", "5",
                                "--initial-labeled", "0", "--strategy", "margin"],
                               cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True)
    try:
        database = tmp_path / "activelabel.db"
        engine = None
        deadline = time.monotonic() + BOUND_S
        while True:
            assert cli.poll() is None, err.read_text()[-3000:]
            assert time.monotonic() < deadline, err.read_text()[-3000:]
            if database.exists():
                engine = engine or open_engine(f"sqlite:///{database}", create_schema=False)
                try:
                    if [r[1] for r in _rounds(engine)] == [RoundStatus.waiting_for_labels]:
                        break
                except Exception:  # the schema is not created yet
                    pass
            time.sleep(0.3)
        os.kill(cli.pid, signal.SIGINT)  # the CLI alone, as in test_flows_crash
        code = cli.wait(timeout=180)
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
            cli.wait()
    said = err.read_text()
    assert code == 130, said[-3000:]
    assert "Traceback" not in said and "failed" not in said and "error" not in said.lower(), said[-3000:]
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    assert lines[-1] == ("stopped by Ctrl-C after round 1 was pushed: it waits for labels; `activelabel watch "
                         "pushed` (or the same command again) continues once they arrive"), lines[-5:]
    assert any(line.startswith("round 1 waits for labels (stopped by Ctrl-C after it was pushed)")
               for line in lines), lines[-5:]
    # The stored round is as the push left it: waiting, no error, its 5 samples out.
    assert _rounds(engine) == [(1, RoundStatus.waiting_for_labels, None, None)]
    with session_scope(engine) as session:
        assert len(session.scalars(select(Selection.id)).all()) == 5
