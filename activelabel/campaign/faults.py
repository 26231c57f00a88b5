"""Fault injection for reliability tests: kill the process at a named point of a round.

``ACTIVELABEL_CRASH_AT=score`` makes the process SIGKILL itself in the score step after the
work is done and before its results are committed — the worst moment — the first time round
``ACTIVELABEL_CRASH_ROUND`` (default: any round) reaches it. Unset in normal use; costs one
environment lookup per step.
"""

from __future__ import annotations

import os
import signal

CRASH_AT_ENV = "ACTIVELABEL_CRASH_AT"
CRASH_ROUND_ENV = "ACTIVELABEL_CRASH_ROUND"


def crash_point(step: str, round_index: int) -> None:
    if os.environ.get(CRASH_AT_ENV) != step:
        return
    wanted_round = os.environ.get(CRASH_ROUND_ENV)
    if wanted_round is not None and int(wanted_round) != round_index:
        return
    os.kill(os.getpid(), signal.SIGKILL)
