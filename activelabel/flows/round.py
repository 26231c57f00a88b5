"""Prefect flows: one round, and a campaign of rounds. Thin wiring; the work is in ``campaign``.

Tasks take ids, never arrays or models: the database carries state between steps, so a task
retried or rerun in another process sees exactly what was committed.
"""

from __future__ import annotations

import logging

from prefect import flow, task
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from prefect.cache_policies import NO_CACHE

from activelabel.campaign import lookup, steps
from activelabel.campaign.data import one_pool_listing
from activelabel.campaign.hints import follow_up  # noqa: F401  (also imported from here)
from activelabel.campaign.stopping import check_stop
from activelabel.campaign.summary import RoundSummary, round_summary
from activelabel.errors import DatabaseUnavailableError, ServiceUnavailableError
from activelabel.flows.engines import engine_for
from activelabel.storage.database import describe_error, describe_url, release_reads_cut_by
from activelabel.storage.lease import campaign_lease
from activelabel.progress import reporter
from activelabel import stop

log = logging.getLogger(__name__)


@task(name="train", cache_policy=NO_CACHE)
def train_task(database_url: str | None, round_id: int) -> None:
    steps.train_step(engine_for(database_url), round_id)


@task(name="score", cache_policy=NO_CACHE)
def score_task(database_url: str | None, round_id: int, dask_address: str | None = None,
               dask_workers: int | None = None) -> None:
    runner = shard_runner(database_url, dask_address, dask_workers)
    if runner is None:
        steps.score_step(engine_for(database_url), round_id)
    else:
        steps.score_step(engine_for(database_url), round_id, run_shards=runner)


def shard_runner(database_url: str | None, dask_address: str | None, dask_workers: int | None):
    """Where an active round's pool is scored: None (this process) unless a Dask scheduler
    address or a local worker count is given (then :class:`~activelabel.flows.sharded.DaskShards`;
    workers read the checkpoint from ``database_url``, else their ``$ACTIVELABEL_DATABASE_URL``,
    else this flow's database, whose URL is sent without its password)."""
    if dask_address is None and dask_workers is None:
        return None
    from activelabel.flows.sharded import DaskShards
    from activelabel.storage.database import without_password

    flow_url = without_password(engine_for(database_url).url.render_as_string(hide_password=False))
    return DaskShards(address=dask_address, workers=dask_workers, database_url=database_url,
                      flow_database_url=flow_url)


@task(name="select", cache_policy=NO_CACHE)
def select_task(database_url: str | None, round_id: int) -> None:
    steps.select_step(engine_for(database_url), round_id)


def _service_down(task, task_run, state) -> bool:
    """Retry only when an outside service is down; a refusal or a bug fails at once."""
    try:
        state.result()
    except ServiceUnavailableError:
        return True
    except BaseException:
        return False
    return False


RETRY_WHEN_DOWN = dict(retries=3, retry_delay_seconds=[1, 4, 16], retry_condition_fn=_service_down)


@task(name="push", cache_policy=NO_CACHE, **RETRY_WHEN_DOWN)
def push_task(database_url: str | None, round_id: int) -> None:
    steps.push_step(engine_for(database_url), round_id)


@task(name="sync", cache_policy=NO_CACHE, **RETRY_WHEN_DOWN)
def sync_task(database_url: str | None, round_id: int) -> steps.SyncResult:
    return steps.sync_step(engine_for(database_url), round_id)


@flow(name="activelabel-round", flow_run_name="{campaign_name}")
def round_flow(campaign_name: str, database_url: str | None = None, dask_address: str | None = None,
               dask_workers: int | None = None, command_ref: str | None = None) -> RoundSummary:
    """Run (or resume) the campaign's current round: train → score → select → push → sync.

    ``command_ref``: how a follow-up command the flow suggests names the campaign (see
    :func:`follow_up`); default the campaign's name.

    Holds the campaign's lease throughout, so a second process gets "already running".
    ``dask_address`` (``tcp://host:8786``, an existing cluster) or ``dask_workers`` (N local
    worker processes) scores an active round's pool as shards on Dask (docs/scale.md).
    """
    shard_runner(database_url, dask_address, dask_workers)  # a bad option fails before training
    engine = engine_for(database_url)
    campaign_id = lookup.campaign_id(engine, campaign_name)
    index = lookup.current_round_index(engine, campaign_id)
    progress = reporter()
    with campaign_lease(engine, campaign_id, campaign_name, index):
        round_id: int | None = None
        try:  # from the round's start: a stop landing just after its row was committed marks it too
            round_id = steps.start_round(engine, campaign_id)
            stop.hold(round_id, _recorder_of_cut(engine, round_id))
            progress.start_round(index)
            train_task(database_url, round_id)
            score_task(database_url, round_id, dask_address, dask_workers)
            select_task(database_url, round_id)
            push_task(database_url, round_id)
            sync_task(database_url, round_id)
        except BaseException as error:
            if round_id is None:
                # start_round did not return: only a stop marks a round (the one it made or
                # reopened); its other errors (a refusal, the pool folder) leave rounds as they were.
                if stop.note(error) is not None:
                    _record_stopped_start(engine, campaign_id, error)
                raise
            if isinstance(error, (OperationalError, ServiceUnavailableError)):
                stop.release(round_id)  # not cut: it keeps its step, to resume when the service is back
            if isinstance(error, OperationalError):
                progress.finish_round(f"round {index}: database unreachable", done=False)
                raise lost_database(engine, campaign_name, index, error, command_ref) from None
            if isinstance(error, ServiceUnavailableError):
                # Nothing is wrong with the round: it waits in its step for the service to return.
                steps.note_error(engine, round_id, error)
                progress.finish_round(f"round {index} waits: {error}", done=False)
                raise
            # A stop (also Prefect's TerminationSignal) is recorded even if something swallows it.
            signum = stop.note(error)
            if _record_failure(engine, round_id, error):
                stop.release(round_id)
            left = None if signum is None else _left_by_stop(engine, round_id, index, signum, campaign_name, command_ref)
            if left is not None:  # the stop cut nothing: the round was pushed (or done) already
                progress.finish_round(left[0], done=False)
                stop.note_left(left[1])
            else:
                progress.finish_round(f"round {index} failed: {error if signum is None else stop.Stopped(signum)}",
                                      done=False)
            raise
        summary = round_summary(engine, round_id)
        stop.release(round_id)
    progress.finish_round(summary.describe())
    log.info("Campaign %r: %s", campaign_name, summary.describe())
    return summary


def _record_stopped_start(engine: Engine, campaign_id: int, error: BaseException) -> None:
    """Mark the campaign's unfinished round (if any) stopped, for a stop that cut start_round."""
    try:
        round_id = lookup.unfinished_round_id(engine, campaign_id)
    except SQLAlchemyError:
        log.warning("could not record the stop of campaign id %d's round: database unreachable", campaign_id)
        return
    if round_id is not None:
        _record_failure(engine, round_id, error)


def _record_failure(engine: Engine, round_id: int, error: BaseException) -> bool:
    """Mark the round failed at its step (:func:`steps.mark_failed`, which leaves a round already
    failed, complete or waiting for labels as it is); False, with a warning, if the database did
    not take it."""
    release_reads_cut_by(error)  # a read the stop cut would keep SQLite locked against this write
    try:
        steps.mark_failed(engine, round_id, error)
    except SQLAlchemyError as failure:
        log.warning("could not record the failure of round id %d: %s", round_id, describe_error(failure, engine))
        return False
    return True


def _left_by_stop(engine: Engine, round_id: int, index: int, signum: int, campaign_name: str,
                  command_ref: str | None) -> tuple[str, str] | None:
    """(the round's progress line, the words after "stopped by Ctrl-C") when a stop cut nothing
    because the round's stored status is already waiting for labels or complete (the stop landed
    in its sync, or just after), else None: then the stop cut the round and it "failed" at its step.

    Why: trial 15, F6: a Ctrl-C 0.1 s after round 5 reached ``waiting_for_labels`` printed
    "round 5 failed: stopped by Ctrl-C" while the database (rightly) kept it waiting with all its
    tasks out. The exit status stays 128 + signal: the command was still interrupted."""
    from activelabel.storage import Round, RoundStatus, session_scope

    try:
        with session_scope(engine) as session:
            rnd = session.get(Round, round_id)
            status = None if rnd is None else rnd.status
    except SQLAlchemyError:
        return None  # the database does not say: the plain stop line, as before
    how = f"stopped by {stop.signal_name(signum)}"
    if status == RoundStatus.waiting_for_labels:
        watch = follow_up("watch", campaign_name, command_ref)
        return (f"round {index} waits for labels ({how} after it was pushed)",
                f"after round {index} was pushed: it waits for labels; {watch} (or the same command again) "
                "continues once they arrive")
    if status == RoundStatus.complete:
        return (f"round {index} complete ({how} after it completed)",
                f"after round {index} completed; run the same command again to continue")
    return None


def _recorder_of_cut(engine: Engine, round_id: int):
    """What :func:`activelabel.stop.record_cut_work` calls for this round: mark it stopped."""
    return lambda signum: _record_failure(engine, round_id, stop.Stopped(signum))


def lost_database(engine: Engine, campaign_name: str, index: int, error: Exception,
                  command_ref: str | None = None) -> DatabaseUnavailableError:
    """A clear message for a database that went away mid-round (the round resumes later)."""
    return DatabaseUnavailableError(
        f"lost the database {describe_url(engine.url.render_as_string(hide_password=False))} "
        f"during round {index} of campaign {campaign_name!r} ({describe_error(error, engine)}); "
        "the round keeps its last "
        f"committed step — run {follow_up('resume', campaign_name, command_ref)} once the database is back"
    )


@flow(name="activelabel-campaign", flow_run_name="{campaign_name}")
def campaign_flow(campaign_name: str, rounds: int, database_url: str | None = None, dask_address: str | None = None,
                  dask_workers: int | None = None, advise_on_wait: bool = True,
                  command_ref: str | None = None) -> list[RoundSummary]:
    """Run rounds until the campaign has ``rounds`` complete ones (resuming an unfinished one);
    ``dask_address`` / ``dask_workers`` / ``command_ref`` as :func:`round_flow`. ``advise_on_wait=False``: a round
    waiting for labels is not announced with the advice to sync or watch (``watch`` says it once)."""
    engine = engine_for(database_url)
    campaign_id = lookup.campaign_id(engine, campaign_name)
    summaries = []
    while steps.completed_rounds(engine, campaign_id) < rounds:
        with one_pool_listing():  # the stop check and the round's start list the pool folder once
            reason = check_stop(engine, campaign_id)
            if reason:
                log.warning("Campaign %r stopped: %s", campaign_name, reason)
                break
            summary = round_flow(campaign_name, database_url, dask_address, dask_workers, command_ref)
        summaries.append(summary)
        if summary.status == "waiting_for_labels":
            if advise_on_wait:
                log.warning(
                    "Round %d waits for labels from the annotators; run %s or %s to continue", summary.index,
                    follow_up("sync", campaign_name, command_ref, note=False), follow_up("watch", campaign_name, command_ref),
                )
            break
        if summary.status != "complete":
            log.warning("Round %d is %s; stopping the campaign here", summary.index, summary.status)
            break
    else:
        reason = check_stop(engine, campaign_id)
        if reason:
            log.warning("Campaign %r stopped: %s", campaign_name, reason)
    return summaries


@flow(name="activelabel-sync", flow_run_name="{campaign_name}")
def sync_flow(campaign_name: str, database_url: str | None = None) -> steps.SyncResult:
    """Pull finished annotations back; the waiting round completes once enough are resolved."""
    engine = engine_for(database_url)
    return sync_campaign_task(database_url, lookup.campaign_id(engine, campaign_name))


@task(name="sync-campaign", cache_policy=NO_CACHE, **RETRY_WHEN_DOWN)
def sync_campaign_task(database_url: str | None, campaign_id: int) -> steps.SyncResult:
    return steps.sync_campaign(engine_for(database_url), campaign_id)
