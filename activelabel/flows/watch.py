"""Keep a campaign going: the next round starts as soon as the current one has its labels.

Polling is the source of truth (Label Studio delivers webhooks once, best effort); the webhook,
when enabled, only wakes the loop early so labels are picked up within seconds.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine

from activelabel import stop
from activelabel.campaign import lookup, steps
from activelabel.campaign.summary import RoundSummary
from activelabel.errors import ConfigError
from activelabel.flows.guard import interrupted_round
from activelabel.flows.round import campaign_flow

log = logging.getLogger(__name__)


class WatchStopped(Exception):
    """Ctrl-C or SIGTERM ended a watch that was only waiting (for labels, or for another
    process's round): nothing was cut, so it is no error. ``signum``: the signal; ``done``: the
    campaign's complete rounds then. A stop that cuts a round mid-way is not this: it propagates
    as the stop it is (exit 130/143 with the resume hint)."""

    def __init__(self, signum: int, done: int) -> None:
        super().__init__(signum, done)
        self.signum = signum
        self.done = done


def watch_campaign(
    engine: Engine,
    campaign_name: str,
    rounds: int,
    *,
    poll_seconds: float = 30.0,
    webhook: tuple[str, int] | None = None,
    on_round: Callable[[RoundSummary], None] = lambda _summary: None,
    deadline_seconds: float | None = None,
    dask: tuple[str | None, int | None] = (None, None),
    command_ref: str | None = None,
) -> int:
    """Run rounds until ``rounds`` are complete, or until a stopping rule stops the campaign
    (said in a warning with its reason); returns the number of complete rounds.

    ``webhook=(host, port)`` starts a receiver there and registers it with the campaign's
    Label Studio project; the webhook is deleted again on every way out (the end, a stop rule,
    an error, Ctrl-C, SIGTERM — which is turned into ``SystemExit(143)`` while watching). ``deadline_seconds`` stops waiting after that long (for tests and
    batch jobs); by default it waits as long as the labels take. ``dask`` = (scheduler
    address, local workers) scores active rounds as shards on Dask (``--dask-*``).
    ``command_ref``: how follow-up commands in messages name the campaign
    (:func:`activelabel.campaign.hints.follow_up`; the CLI passes the campaign file's absolute path).

    Raises :class:`WatchStopped` for Ctrl-C or SIGTERM while it only waits (no round of
    this process cut mid-way); a stop that cuts a round propagates as that stop.

    Two watches (or a watch and ``run``) on one campaign never run a round twice: a round holds
    the campaign's lease (:mod:`activelabel.storage.lease`). While another process holds it,
    this watch says so once and keeps waiting instead of failing.
    """
    campaign_id = lookup.campaign_id(engine, campaign_name)
    try:
        return _watch(engine, campaign_id, campaign_name, rounds, poll_seconds, webhook, on_round,
                      deadline_seconds, dask, command_ref)
    except BaseException as error:
        signum = stop.stop_signal_in_chain(error)
        if signum is None and isinstance(error, SystemExit) and error.code == 128 + signal.SIGTERM:
            signum = int(signal.SIGTERM)  # SIGTERM while the webhook listens (see _exit_on_sigterm)
        if signum is None:
            raise
        try:  # what the stop cut decides how it ends; the database may not answer now
            cut, done = interrupted_round(engine, campaign_id), steps.completed_rounds(engine, campaign_id)
        except Exception:
            raise error from None
        if cut is not None:
            raise
        raise WatchStopped(signum, done) from None


def _watch(engine: Engine, campaign_id: int, campaign_name: str, rounds: int, poll_seconds: float,
           webhook: tuple[str, int] | None, on_round: Callable[[RoundSummary], None],
           deadline_seconds: float | None, dask: tuple[str | None, int | None], command_ref: str | None) -> int:
    """:func:`watch_campaign`'s loop, with its webhook's set-up and clean-up."""
    if webhook:
        done = steps.completed_rounds(engine, campaign_id)
        if done >= rounds:  # nothing to wait for: no "Listening for webhooks" line, no webhook (trial 16 F3)
            return done
    terminated: list[int] = []
    previous = _exit_on_sigterm(terminated) if webhook else None
    made: list[tuple] = []  # filled the moment the webhook exists, so a stop right then still deletes it
    try:
        if webhook:
            _start_webhook(engine, campaign_id, webhook, made)
    except BaseException:
        if made:
            _stop_webhook(*made[0])
        _restore_sigterm(previous)
        raise
    hook = made[0] if made else None
    receiver = hook[0] if hook is not None else None
    started = time.monotonic()
    reported: set[int] = set()
    waiting: set[int] = set()
    told_busy: set[str] = set()  # each holder (and what it does) is said once, not at every poll it holds
    try:
        while True:
            _check_terminated(terminated)
            stop.raise_if_requested()  # a stop Python swallowed (in a weakref callback) still ends it
            summaries, busy = _advance(engine, campaign_id, campaign_name, rounds, dask, command_ref)
            if busy is not None and busy not in told_busy:  # said once per holder, not at every check,
                # also when two watches leapfrog: each holds the lease only for its poll's sync (trial 15, F7)
                told_busy.add(busy)
                log.warning("Campaign %r: %s; this watch waits and checks again every %.0f s",
                            campaign_name, busy, poll_seconds)
            for summary in summaries:
                if summary.status == "complete" and summary.index not in reported:
                    reported.add(summary.index)
                    on_round(summary)
                if summary.status == "waiting_for_labels" and summary.index not in waiting:
                    waiting.add(summary.index)  # said once per round, not at every check
                    log.warning("Round %d waits for labels; checking every %.0f s%s", summary.index, poll_seconds,
                             " and on Label Studio's webhook" if receiver is not None else "")
            done = steps.completed_rounds(engine, campaign_id)
            if done >= rounds:
                return done
            stopped = stopped_by_rule(engine, campaign_id)
            if stopped is not None:  # no round will start however long we wait: say why and end
                log.warning("Stopped watching %r: the campaign stopped (%s) with %d of %d rounds complete",
                            campaign_name, stopped, done, rounds)
                return done
            if deadline_seconds is not None and time.monotonic() - started > deadline_seconds:
                log.warning("Stopped watching %r after %.0f s: %d of %d rounds complete",
                            campaign_name, deadline_seconds, done, rounds)
                return done
            if receiver is not None:
                if _wait_for_event(receiver, poll_seconds, terminated):
                    log.info("Label Studio reported new annotations; syncing now")
            else:
                _sleep(poll_seconds)
    finally:
        if hook is not None:
            _stop_webhook(*hook)
        _restore_sigterm(previous)


def _advance(engine: Engine, campaign_id: int, campaign_name: str, rounds: int,
             dask: tuple[str | None, int | None], command_ref: str | None) -> tuple[list[RoundSummary], str | None]:
    """Run what rounds can run now: (their summaries, None), or ([], who holds the campaign's
    lease and what it does: :func:`~activelabel.flows.guard.holder_doing`) when another process
    (a second watch, ``run``, ``resume``) holds it."""
    from activelabel.flows.guard import holder_doing, unless_busy

    summaries, holder = unless_busy(engine, campaign_id, lambda: campaign_flow(
        campaign_name, rounds, dask_address=dask[0], dask_workers=dask[1], advise_on_wait=False,
        command_ref=command_ref))
    return (summaries or [], None) if holder is None else ([], holder_doing(engine, campaign_id, holder))


def _exit_on_sigterm(terminated: list[int]):
    """Make SIGTERM unwind like Ctrl-C (so ``finally`` blocks run); the old handler, or None
    outside the main thread (where signals cannot be handled).

    The signal is also noted in ``terminated``: Python drops an exception raised while it runs
    a weakref callback or ``__del__`` ("Exception ignored in ..."), so the loop checks the note
    too (:func:`_check_terminated`) and the watch still ends.
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def _terminate(signum, _frame):
        terminated.append(signum)
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, _terminate)


def _check_terminated(terminated: list[int]) -> None:
    if terminated:
        raise SystemExit(128 + terminated[0])


def _sleep(seconds: float) -> None:
    """Sleep in slices of at most 0.5 s, so a stop whose exception Python swallowed (it is still
    recorded: :mod:`activelabel.stop`) ends the wait promptly."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        stop.raise_if_requested()
        time.sleep(min(left, 0.5))
    stop.raise_if_requested()


def _wait_for_event(receiver, seconds: float, terminated: list[int]) -> bool:
    """The receiver's wait, in slices of at most 1 s so a noted SIGTERM (or a recorded stop)
    ends it promptly."""
    end = time.monotonic() + seconds
    while True:
        _check_terminated(terminated)
        stop.raise_if_requested()
        left = end - time.monotonic()
        if left <= 0:
            return False
        if receiver.wait_for_event(min(left, 1.0)):
            return True


def _restore_sigterm(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _stop_webhook(receiver, client, webhook_id: int) -> None:
    """Delete our webhook from Label Studio (best effort, a warning when it fails), then stop
    the receiver, so Label Studio never posts to a dead port."""
    from activelabel.annotation.webhook import unregister_webhook

    try:
        unregister_webhook(client, webhook_id)
    finally:
        receiver.stop()


def stopped_by_rule(engine: Engine, campaign_id: int) -> str | None:
    """The stop reason recorded on the campaign's newest round when it is complete (a label
    budget, a target accuracy, a plateau, an exhausted pool: ``campaign.stopping``), else None.
    ``campaign_flow`` records it before it returns without starting a round."""
    from activelabel.storage import RoundStatus, session_scope
    from activelabel.storage.repository import latest_round

    with session_scope(engine) as session:
        last = latest_round(session, campaign_id)
        if last is None or last.status != RoundStatus.complete:
            return None
        return last.stop_reason


def _start_webhook(engine: Engine, campaign_id: int, where: tuple[str, int], started: list[tuple]) -> None:
    """Start the receiver and register its webhook; ``(receiver, client, webhook id)`` is
    appended to ``started`` as soon as the webhook exists. A Ctrl-C or SIGTERM while Label Studio
    makes it (the stop can land after the webhook was made, before its id is back) deletes every
    webhook of the project to this receiver's URL: no webhook outlives the run that made it."""
    from activelabel.annotation.labelstudio import LabelStudioAnnotator
    from activelabel.annotation.webhook import (
        WebhookReceiver, generate_secret, register_webhook, unregister_webhooks_to,
    )
    from activelabel.campaign.config import CampaignConfig
    from activelabel.campaign.setup import build_annotator
    from activelabel.campaign.data import campaign_data
    from activelabel.storage import Campaign, session_scope

    with session_scope(engine) as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        config = CampaignConfig.from_dict(campaign.config)
    annotator = build_annotator(config, campaign_data(config))
    if not isinstance(annotator, LabelStudioAnnotator):
        raise ConfigError(f"--webhook needs a Label Studio campaign; {config.name!r} uses {config.annotator!r}")
    secret = generate_secret()
    project_id = annotator.ensure_project()
    receiver = WebhookReceiver(secret, host=where[0], port=where[1])
    receiver.start()
    try:
        webhook_id = register_webhook(annotator.client, project_id, receiver.url, secret)
        started.append((receiver, annotator.client, webhook_id))
    except BaseException as stopped:
        if not started:
            try:
                if isinstance(stopped, (KeyboardInterrupt, SystemExit)):  # a stop, not a refusal
                    unregister_webhooks_to(annotator.client, project_id, receiver.url)
            finally:
                receiver.stop()
        raise
    log.warning("Listening for Label Studio webhooks on %s (webhook %d, deleted when watching ends)",
                receiver.url, webhook_id)


def ending_line(engine: Engine, campaign_id: int, campaign_name: str, done: int, rounds: int,
                command_ref: str | None = None, *, command: str = "watch") -> str:
    """What ``watch`` says when it ends because ``done`` >= ``rounds`` rounds are complete: true
    also when the campaign went past ``rounds`` (another command gave it more), and naming a
    round still in flight (waiting for labels with its tasks out, or cut at a step) and the
    command that finishes it, since this watch leaves it alone. ``command="run"``: what ``run``
    says instead of running nothing in silence."""
    from activelabel.campaign.hints import follow_up
    from activelabel.storage import RoundStatus, session_scope
    from activelabel.storage.repository import latest_round, round_selections

    counted = (f"{done} of {rounds} rounds complete" if done == rounds
               else f"{done} rounds complete ({command} was asked for {rounds})")
    ends = "so watch ends" if command == "watch" else f"so {command} has no round to run"
    line = f"Campaign {campaign_name!r}: {counted}, {ends}"
    with session_scope(engine) as session:
        last = latest_round(session, campaign_id)
        open_round = None
        if last is not None and last.status != RoundStatus.complete:
            out = len(round_selections(session, last.id))
            step = last.failed_step if last.status == RoundStatus.failed else last.status
            open_round = (last.index, last.status, step, out)
    if open_round is None:
        return line + "; for more, raise `rounds` in the campaign file or pass --rounds N"
    index, status, step, out = open_round
    watch_more = follow_up(command, campaign_name, command_ref, extra=f" --rounds {index}")
    if status == RoundStatus.waiting_for_labels:
        return (line + f"; round {index} is still waiting for labels ({out} sample(s) out with the annotators): "
                f"{follow_up('sync', campaign_name, command_ref, note=False)} collects them, {watch_more} finishes it")
    return (line + f"; round {index} is unfinished (at step {step.value.replace('_', ' ')}): "
            f"{follow_up('resume', campaign_name, command_ref, note=False)} continues it, {watch_more} too")
