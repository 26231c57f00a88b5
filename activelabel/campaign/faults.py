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

from activelabel.stop import raise_if_requested

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
    """Wait ``until`` seconds, or until the file ``until`` exists (at most 600 s).

    Honours a recorded stop request (:func:`activelabel.stop.raise_if_requested`) every 0.2 s, as
    a long step does at its next phase: a test that stops a paused round sees it stop."""
    try:
        seconds, file = float(until), None
    except ValueError:
        seconds, file = 600.0, until
    deadline = time.monotonic() + seconds
    while (file is None or not os.path.exists(file)) and time.monotonic() < deadline:
        raise_if_requested()
        time.sleep(max(0.0, min(0.2, deadline - time.monotonic())))
    raise_if_requested()
