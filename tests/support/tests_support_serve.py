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
