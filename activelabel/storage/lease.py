"""One round per campaign at a time, enforced by the database rather than a lock file.

A process takes the campaign's lease (a row keyed by campaign id) before it works on a round
and keeps it fresh with a heartbeat. Another process finding a live lease stops with a clear
error; a lease left by a crash is taken over — at once when its process is gone from this host,
else once its heartbeat is older than ``stale_after``.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, delete, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from activelabel.errors import RoundAlreadyRunningError
from activelabel.storage.database import session_scope
from activelabel.storage.models import CampaignLease, utcnow

HEARTBEAT_SECONDS = 15.0
STALE_AFTER = timedelta(minutes=2)

# Leases this process holds right now: a lease naming our pid but not in here was left by
# an earlier run in this same process (e.g. the database went away before it was released).
_held: set[str] = set()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host: how a lease's holder, and a serve serving a
    campaign (:func:`activelabel.flows.schedule.live_server`), are judged alive here."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes; every stored time is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _is_stale(lease: CampaignLease, now: datetime, stale_after: timedelta) -> bool:
    if lease.host == socket.gethostname():
        if lease.pid == os.getpid():
            return lease.owner not in _held
        if not pid_alive(lease.pid):
            return True
    return now - _aware(lease.heartbeat_at) > stale_after


def acquire(
    engine: Engine,
    campaign_id: int,
    campaign_name: str,
    round_index: int,
    *,
    stale_after: timedelta = STALE_AFTER,
) -> str:
    """Take the campaign's lease; returns its owner token. Raises if a live process holds it."""
    owner = uuid.uuid4().hex
    fields = dict(owner=owner, host=socket.gethostname(), pid=os.getpid(), round_index=round_index)
    try:
        with session_scope(engine) as session:
            session.add(CampaignLease(campaign_id=campaign_id, **fields))
        _held.add(owner)
        return owner
    except IntegrityError:
        pass
    with session_scope(engine) as session:
        lease = session.get(CampaignLease, campaign_id)
        now = utcnow()
        if lease is not None and not _is_stale(lease, now, stale_after):
            age = (now - _aware(lease.heartbeat_at)).total_seconds()
            raise RoundAlreadyRunningError(
                f"round {lease.round_index} of campaign {campaign_name!r} is already running "
                f"(process {lease.pid} on {lease.host}, last heartbeat {age:.0f}s ago)"
            )
        previous = lease.owner if lease is not None else None
        # Compare-and-set on the old owner: of two processes taking over, one wins.
        taken = session.execute(
            update(CampaignLease)
            .where(CampaignLease.campaign_id == campaign_id, CampaignLease.owner == previous)
            .values(acquired_at=now, heartbeat_at=now, **fields)
        ).rowcount
    if taken != 1:
        raise RoundAlreadyRunningError(
            f"round {round_index} of campaign {campaign_name!r} is already running "
            "(another process took it over just now)"
        )
    _held.add(owner)
    return owner


def live_holder(engine: Engine, campaign_id: int, *, stale_after: timedelta = STALE_AFTER) -> str | None:
    """Who runs a round of the campaign now ("process P on H"), or None when nobody does."""
    with session_scope(engine) as session:
        lease = session.get(CampaignLease, campaign_id)
        if lease is None or _is_stale(lease, utcnow(), stale_after):
            return None
        return f"process {lease.pid} on {lease.host} (round {lease.round_index})"


def release(engine: Engine, campaign_id: int, owner: str) -> None:
    _held.discard(owner)
    with session_scope(engine) as session:
        session.execute(
            delete(CampaignLease).where(
                CampaignLease.campaign_id == campaign_id, CampaignLease.owner == owner
            )
        )


def _heartbeat(engine: Engine, campaign_id: int, owner: str, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            with session_scope(engine) as session:
                session.execute(
                    update(CampaignLease)
                    .where(CampaignLease.campaign_id == campaign_id, CampaignLease.owner == owner)
                    .values(heartbeat_at=utcnow())
                )
        except SQLAlchemyError:
            continue  # the round's own steps report a lost database; keep trying


@contextmanager
def campaign_lease(
    engine: Engine, campaign_id: int, campaign_name: str, round_index: int
) -> Iterator[str]:
    """Hold the campaign's lease (with a heartbeat thread) for the duration of the block."""
    owner = acquire(engine, campaign_id, campaign_name, round_index)
    stop = threading.Event()
    beat = threading.Thread(
        target=_heartbeat, args=(engine, campaign_id, owner, stop), daemon=True,
        name=f"activelabel-lease-{campaign_id}",
    )
    beat.start()
    try:
        yield owner
    finally:
        stop.set()
        beat.join(timeout=5)
        try:
            release(engine, campaign_id, owner)
        except SQLAlchemyError:
            pass  # database gone: the lease is stale for our pid and is taken over next time
