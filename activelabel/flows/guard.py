"""One guard for loops that start rounds on their own (``watch``, ``serve``'s ticks): skip,
rather than fail, while another process runs a round of the campaign.

The campaign's lease (:mod:`activelabel.storage.lease`) is what prevents two rounds at once;
this only turns "someone else holds it" into a value the loop can report and wait on. It is
checked before the work (no flow run is started for nothing) and again through the flow's own
``RoundAlreadyRunningError`` (the lease was taken between the check and the flow's acquire).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Engine

from activelabel.errors import RoundAlreadyRunningError
from activelabel.storage.lease import live_holder

T = TypeVar("T")


def unless_busy(engine: Engine, campaign_id: int, work: Callable[[], T]) -> tuple[T | None, str | None]:
    """``(work(), None)``, or ``(None, who)`` when another process holds the campaign's lease:
    ``who`` is "process P on H (round N)", or "another process" when it was taken and released
    again before it could be read. Other errors of ``work`` propagate."""
    holder = live_holder(engine, campaign_id)
    if holder is not None:
        return None, holder
    try:
        return work(), None
    except RoundAlreadyRunningError:  # taken between the check and the flow's own
        return None, live_holder(engine, campaign_id) or "another process"


def holder_doing(engine: Engine, campaign_id: int, holder: str) -> str:
    """What the lease's ``holder`` does, in words for a waiting loop's message: "P holds the
    campaign's lease (syncing)" while the campaign's latest round waits for labels (its holder
    then only collects answers: the sync of a ``watch`` poll or a ``run``, seconds long), else "P is
    running a round". Trial 15, F7: two watches on one waiting campaign called each other's
    poll "running a round"."""
    from activelabel.storage import RoundStatus, session_scope
    from activelabel.storage.repository import latest_round

    with session_scope(engine) as session:
        last = latest_round(session, campaign_id)
        waiting = last is not None and last.status == RoundStatus.waiting_for_labels
    return f"{holder} holds the campaign's lease (syncing)" if waiting else f"{holder} is running a round"


_WORKING = ("training", "scoring", "selecting", "pushing")


def interrupted_round(engine: Engine, campaign_id: int) -> str | None:
    """"round N at step S" when the campaign's latest round stands in a working step (or
    failed in one, as a stop marks it) and no live process holds the campaign's lease: a stop
    cut it mid-way and ``resume`` (or the next ``watch`` / ``serve``) continues it. None when
    it is complete, waits for labels, or another process is working on it."""
    from activelabel.storage import RoundStatus, session_scope
    from activelabel.storage.repository import latest_round

    if live_holder(engine, campaign_id) is not None:
        return None
    with session_scope(engine) as session:
        last = latest_round(session, campaign_id)
        if last is None:
            return None
        step = last.failed_step if last.status == RoundStatus.failed else last.status
        index = last.index
    if step is None or step.value not in _WORKING:
        return None
    return f"round {index} at step {step.value}"
