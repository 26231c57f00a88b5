"""A watch that meets another holder of the campaign's lease says so once per holder, in words
that fit what the holder does (trial 15, F7).

Two watches on one waiting campaign leapfrog: each takes the lease only for its poll's sync, so
each met the other's lease at every other poll, and said "process N ... is running a round"
every time, though no round ran. Here the other holder is a real lease in this test's database,
taken, released and taken again (as the other watch's polls do) by a thread, while a real watch
polls a real Label Studio campaign whose round 1 waits for labels; between the holds the watch
takes the lease itself and syncs. The thread then records a stop request (as a Ctrl-C does),
which ends the watch.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest
from sqlalchemy import select

from activelabel import stop
from activelabel.campaign.lookup import campaign_id
from activelabel.errors import RoundAlreadyRunningError
from activelabel.flows import campaign_flow
from activelabel.flows.watch import WatchStopped, watch_campaign
from activelabel.storage import CampaignLease, Round, RoundStatus, open_engine, session_scope
from activelabel.storage.lease import campaign_lease, live_holder
from test_labelstudio_webhook_lifetime import campaign  # noqa: F401  (the fixture: a real LS campaign)
from tests_support_loglines import WarningLines

pytestmark = pytest.mark.labelstudio
HOLD_S = 2.5  # longer than the watch's 1 s poll interval: each hold meets at least one of its polls
BOUND_S = 60.0  # for the watch's own poll (a Prefect flow and a Label Studio read) on a busy machine



def _owners(engine, cid: int) -> set[str]:
    with session_scope(engine) as session:
        return set(session.scalars(select(CampaignLease.owner).where(CampaignLease.campaign_id == cid)))


def _leapfrog(engine, cid: int, name: str, cycles: int, ready: threading.Event, seen: list[str],
              problems: list[str]) -> None:
    """Hold the lease HOLD_S, let it go until the watch took it and let it go (its poll's sync),
    ``cycles`` times; each lease the watch took is appended to ``seen``."""
    mine: set[str] = set()
    try:
        for _ in range(cycles):
            deadline = time.monotonic() + BOUND_S
            while True:
                try:
                    with campaign_lease(engine, cid, name, 1) as owner:
                        mine.add(owner)
                        ready.set()
                        time.sleep(HOLD_S)
                    break
                except RoundAlreadyRunningError:  # the watch syncs right now
                    assert time.monotonic() < deadline, "the watch kept the lease"
                    time.sleep(0.05)
            deadline = time.monotonic() + BOUND_S  # the watch's next poll takes the lease, then leaves it
            while not (theirs := _owners(engine, cid) - mine):
                assert time.monotonic() < deadline, "the watch did not take the lease between two holds"
                time.sleep(0.01)
            seen.extend(theirs)
            while _owners(engine, cid) & theirs:
                assert time.monotonic() < deadline, "the watch kept the lease"
                time.sleep(0.01)
    except BaseException as error:  # reported by the test, which cannot see a thread's assert
        problems.append(repr(error))
        ready.set()
    finally:
        stop.request(signal.SIGINT)  # ends the watch as a Ctrl-C whose exception was lost would


def test_a_watch_says_once_that_a_syncing_holder_holds_the_lease(campaign) -> None:  # noqa: F811
    name, _project_id, _folder = campaign
    url = os.environ["ACTIVELABEL_DATABASE_URL"]
    assert campaign_flow(name, 1)[0].status == "waiting_for_labels"  # round 1's 4 tasks are out
    holder_engine, watch_engine = open_engine(url), open_engine(url)
    cid = campaign_id(watch_engine, name)
    ready, seen, problems = threading.Event(), [], []
    other = threading.Thread(target=_leapfrog, args=(holder_engine, cid, name, 3, ready, seen, problems), daemon=True)
    other.start()
    assert ready.wait(BOUND_S) and not problems, problems
    holder = live_holder(watch_engine, cid)
    assert holder == f"process {os.getpid()} on {os.uname().nodename} (round 1)"
    lines = WarningLines()
    logging.getLogger("activelabel.flows.watch").addHandler(lines)
    try:
        with pytest.raises(WatchStopped) as stopped:  # once the thread is done: only waiting, nothing cut
            watch_campaign(watch_engine, name, 1, poll_seconds=1.0, deadline_seconds=10 * (HOLD_S + BOUND_S))
    finally:
        logging.getLogger("activelabel.flows.watch").removeHandler(lines)
        other.join(BOUND_S)
        stop.clear()
    assert not problems, problems
    assert len(seen) == 3  # the watch took the lease between each of the 3 holds: they leapfrogged
    assert stopped.value.done == 0
    busy = [line for line in lines.lines if "this watch waits" in line]
    assert busy == [f"Campaign '{name}': {holder} holds the campaign's lease (syncing); "
                    "this watch waits and checks again every 1 s"], lines.lines
    with session_scope(watch_engine) as session:
        assert session.execute(select(Round.index, Round.status)).all() == [(1, RoundStatus.waiting_for_labels)]
