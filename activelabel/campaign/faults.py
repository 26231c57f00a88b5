"""Fault injection for reliability tests: kill or stall the process at a named point of a round.

``ACTIVELABEL_CRASH_AT=score`` makes the process SIGKILL itself in the score step after the
work is done and before its results are committed — the worst moment — the first time round
``ACTIVELABEL_CRASH_ROUND`` (default: any round) reaches it. ``ACTIVELABEL_PAUSE_AT=train:/tmp/go``
makes it wait there until the file ``/tmp/go`` exists (``train:20``: sleep 20 s), so a test
can start a second process mid-round. Unset in
normal use; costs two environment lookups per step.
"""

from __future__ import annotations

import os
import signal
import time

CRASH_AT_ENV = "ACTIVELABEL_CRASH_AT"
CRASH_ROUND_ENV = "ACTIVELABEL_CRASH_ROUND"
PAUSE_AT_ENV = "ACTIVELABEL_PAUSE_AT"


def crash_point(step: str, round_index: int) -> None:
    pause_step, _, until = os.environ.get(PAUSE_AT_ENV, "").partition(":")
    if pause_step == step:
        _pause(until)
    if os.environ.get(CRASH_AT_ENV) != step:
        return
    wanted_round = os.environ.get(CRASH_ROUND_ENV)
    if wanted_round is not None and int(wanted_round) != round_index:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def _pause(until: str) -> None:
    try:
        time.sleep(float(until))
        return
    except ValueError:
        pass
    deadline = time.monotonic() + 600
    while not os.path.exists(until) and time.monotonic() < deadline:
        time.sleep(0.2)
