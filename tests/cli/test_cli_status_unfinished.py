"""`activelabel status CAMPAIGN` on a round a run left mid-way: a real `activelabel demo`
paused in a step (ACTIVELABEL_PAUSE_AT), then killed (SIGKILL: the round stays in its step)
or stopped (SIGTERM: the round is marked failed at its step), then resumed."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

EXE = str(Path(sys.executable).with_name("activelabel"))
DEMO = ("demo", "--campaign", "halted", "--batch-size", "8", "--initial-labeled", "16", "--mc-samples", "3",
        "--epochs", "2", "--fixed-epochs", "--strategy", "bald", "--device", "cpu")


def _env(tmp_path: Path, **extra: str) -> dict:
    return {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1", "PREFECT_HOME": str(tmp_path / "prefect-home"),
            **extra}


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=600)


def _status(tmp_path: Path) -> str:
    result = _cli(tmp_path, "status", "halted")
    assert result.returncode == 0, result.stderr
    return " ".join(result.stdout.split())


def _round(tmp_path: Path, index: int) -> tuple | None:
    """(status, failed_step) of round ``index``, None before it exists."""
    try:
        with sqlite3.connect(tmp_path / "activelabel.db") as connection:
            rows = connection.execute('SELECT status, failed_step FROM round WHERE "index" = ?', (index,)).fetchall()
    except sqlite3.Error:  # schema not created yet
        return None
    return rows[0] if rows else None


def _paused_demo(tmp_path: Path, rounds: int, step: str, status: str):
    """Start `activelabel demo` paused in ``step`` of round ``rounds``; return it once the
    round's stored status is ``status`` (bounded: 300 s on a busy machine)."""
    log = open(tmp_path / f"demo-{rounds}.err", "w")
    process = subprocess.Popen(
        [EXE, *DEMO, "--rounds", str(rounds)], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log,
        env=_env(tmp_path, ACTIVELABEL_PAUSE_AT=f"{step}:{tmp_path / 'never'}"), start_new_session=True)
    deadline = time.monotonic() + 300
    while not (tmp_path / "activelabel.db").exists() or _round(tmp_path, rounds) != (status, None):
        assert process.poll() is None, (tmp_path / f"demo-{rounds}.err").read_text()[-2000:]
        assert time.monotonic() < deadline, (tmp_path / f"demo-{rounds}.err").read_text()[-2000:]
        time.sleep(0.5)
    return process


def _stop(process: subprocess.Popen, sig: int) -> int:
    os.kill(process.pid, sig)
    try:
        return process.wait(timeout=180)  # one signal is enough, even one dropped in a weakref callback
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # cleanup of anything it started
        except ProcessLookupError:
            pass


def test_status_says_where_an_unfinished_round_stands_and_what_continues_it(tmp_path) -> None:
    demo = _paused_demo(tmp_path, 1, "score", "scoring")
    try:
        said = _status(tmp_path)
        # a run holds the campaign's lease: no advice to resume over it
        assert (f"Round 1 is at step scoring: process {demo.pid} on {socket.gethostname()} (round 1) is running "
                "it now.") in said
        assert "resume" not in said
    finally:
        assert _stop(demo, signal.SIGKILL) == -signal.SIGKILL
    assert _round(tmp_path, 1) == ("scoring", None)  # killed: the round stays in its step
    said = _status(tmp_path)
    assert ("Round 1 stopped at step scoring and no run is active on the campaign (no live lease); "
            "`activelabel resume halted` continues it from there.") in said

    resumed = _cli(tmp_path, "resume", "halted")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _round(tmp_path, 1) == ("complete", None)
    with sqlite3.connect(tmp_path / "activelabel.db") as connection:  # demo --fixed-epochs: no 200-step minimum
        training = json.loads(connection.execute('SELECT training FROM round WHERE "index" = 1').fetchone()[0])
    assert (training["epochs"], training["steps"], training["min_steps"]) == (2, 2, 0)
    said = _status(tmp_path)
    assert "Round 1 " not in said and "resume" not in said

    demo = _paused_demo(tmp_path, 2, "train", "training")
    assert _stop(demo, signal.SIGTERM) == 128 + signal.SIGTERM
    assert _round(tmp_path, 2) == ("failed", "training"), (tmp_path / "demo-2.err").read_text()[-4000:]
    said = _status(tmp_path)
    assert ("Round 2 was stopped at step training (the error column says how; its status reads failed until "
            "it runs again); `activelabel resume halted` continues it from that step.") in said

    # The stop lands just after the round's row was committed, before its first step: the
    # round (here reopened) is marked failed at its step all the same (it stayed "training",
    # unmarked, when the stop came before round_flow's try: a flaky CI failure of this test).
    demo = _paused_demo(tmp_path, 2, "start", "training")
    assert _stop(demo, signal.SIGTERM) == 128 + signal.SIGTERM
    assert _round(tmp_path, 2) == ("failed", "training"), (tmp_path / "demo-2.err").read_text()[-4000:]
    with sqlite3.connect(tmp_path / "activelabel.db") as connection:
        assert connection.execute('SELECT error FROM round WHERE "index" = 2').fetchone() == ("stopped by SIGTERM",)


def test_a_stopped_round_is_said_as_stopped_and_a_failed_one_as_failed() -> None:
    """trial 13 F3: a round stopped by Ctrl-C read as a fault ("failed"); a stop is said as one."""
    from activelabel.campaign.summary import UnfinishedRound

    stopped = UnfinishedRound(4, "training", failed=True, holder=None, stopped=True)
    assert stopped.describe("camp") == (
        "Round 4 was stopped at step training (the error column says how; its status reads failed until it runs "
        "again); `activelabel resume camp` continues it from that step.")
    failed = UnfinishedRound(4, "pushing", failed=True, holder=None)
    assert failed.describe("camp") == (
        "Round 4 failed at step pushing (see the error column); `activelabel resume camp` runs it again from that step.")
