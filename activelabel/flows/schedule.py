"""Labeling rounds on a schedule: a Prefect deployment that advances a campaign every tick.

Each scheduled run advances the campaign by at most one round: it resumes the current round
(for a Label Studio campaign: collects labels, and completes the round when enough arrived) or
starts the next one, until ``max_rounds`` are complete. A tick that finds a round still running
elsewhere skips quietly. Schedules need a Prefect server (``PREFECT_API_URL``); the database
URL comes from the serving process's environment, never from the deployment's parameters.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from sqlalchemy import Engine

from prefect import flow
from prefect.states import State

from activelabel import stop
from activelabel.campaign import lookup, steps
from activelabel.campaign.summary import RoundSummary
from activelabel.errors import CampaignStateError, ServiceUnavailableError
from activelabel.flows.engines import engine_for
from activelabel.flows.guard import interrupted_round, unless_busy
from activelabel.flows.quiet import quiet_prefect_runs, verbose
from activelabel.flows.round import round_flow
from activelabel.serve_checks import check_cron, check_prefect_server, check_schedule_options, prefect_api_url
from activelabel.storage import RoundStatus
from activelabel.storage.lease import STALE_AFTER, pid_alive

log = logging.getLogger(__name__)

FLOW_NAME = "activelabel-scheduled-round"


def _tick_line(text: str) -> None:
    """One line on the terminal of the serve that runs this tick, time-stamped (UTC).

    A tick runs in a flow-run process the runner started; its stderr is serve's own, and
    Prefect's log lines are kept quiet there, so this is what a user watching serve sees."""
    sys.stderr.write(f"{datetime.now(timezone.utc):%H:%M:%S} tick: {text}\n")
    sys.stderr.flush()


class _TickWarning(logging.Handler):
    """activelabel's warnings in a tick, as tick lines: ``HH:MM:SS tick: warning: ...``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _tick_line(f"{record.levelname.lower()}: {record.getMessage()}")
        except Exception:  # noqa: BLE001 - logging must not end the tick
            self.handleError(record)


@contextmanager
def warnings_as_tick_lines() -> Iterator[None]:
    """Inside: activelabel's WARNING (and worse) lines are said as tick lines, and not in
    Prefect's log format besides (trial 16 F4: a 500-character ``07:44:53.924 | WARNING |
    activelabel...`` line between two ``tick:`` lines). With serve ``-v``
    (``PREFECT_LOGGING_LEVEL`` INFO or DEBUG) every line keeps Prefect's format, as asked.
    The logger is as it was afterwards (a tick may run in a process that goes on)."""
    if verbose():
        yield
        return
    ours = logging.getLogger("activelabel")
    handler, propagated = _TickWarning(logging.WARNING), ours.propagate
    ours.addHandler(handler)
    ours.propagate = False
    try:
        yield
    finally:
        ours.removeHandler(handler)
        ours.propagate = propagated


def round_start_line(engine: Engine, campaign_id: int, campaign_name: str) -> str:
    """What a tick says as it takes up the campaign's round: "round N of campaign 'X' runs" for a
    new one, "... resumes at step S" for one a stopped or killed serve/run left at step S (a
    failed round at its failed step: the step ``resume`` names in "Resuming round N ... at
    step S"), "... collects labels" for one waiting for its labels (each tick of a Label Studio
    campaign), so the terminal tells a fresh round from a continued one."""
    from activelabel.storage import session_scope
    from activelabel.storage.repository import latest_round

    with session_scope(engine) as session:
        last = latest_round(session, campaign_id)
        unfinished = last is not None and last.status != RoundStatus.complete
        if unfinished:
            index, step, failed = last.index, last.resume_step, last.status == RoundStatus.failed
    if not unfinished:
        return f"round {lookup.current_round_index(engine, campaign_id)} of campaign {campaign_name!r} runs"
    if step == RoundStatus.waiting_for_labels and not failed:
        return f"round {index} of campaign {campaign_name!r} collects labels"
    return f"round {index} of campaign {campaign_name!r} resumes at step {step.value.replace('_', ' ')}"


#: How a tick records its process on its flow run (``infrastructure_pid``): "host:pid".
def _process_tag() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _record_process() -> None:
    """Record this tick's process on its flow run, so the next serve can tell a run whose
    process was killed (it stays RUNNING on the server forever) from one still finishing its
    round (:func:`mark_dead_ticks_crashed`). Prefect's runner records no process id itself.
    A failure only costs that judgement, never the tick."""
    from prefect import get_client
    from prefect.runtime import flow_run

    try:
        if flow_run.id:
            with get_client(sync_client=True) as client:
                client.update_flow_run(UUID(str(flow_run.id)), infrastructure_pid=_process_tag())
    except Exception as error:  # noqa: BLE001 - bookkeeping only
        log.debug("Could not record the tick's process on its flow run: %s", error)


def _process_gone(pid: int) -> bool:
    """Whether process ``pid`` on this host is dead: gone, or a zombie (a killed tick whose
    parent serve died too is reparented, and in a container PID 1 may never reap it)."""
    if not pid_alive(pid):
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def mark_dead_ticks_crashed(client: Any, campaign_name: str) -> int:
    """Mark as Crashed the campaign's tick runs (and their ``activelabel-round`` subflow runs)
    that are still RUNNING or PENDING on the Prefect server although their process is dead;
    how many tick runs.

    A tick killed with SIGKILL (serve's whole process group killed, a lost machine) cannot
    report its end, and Prefect does not mark such a run crashed by itself: a Prefect-UI user
    would see a round "running" long after the next serve finished it. Only runs whose recorded
    process (:func:`_record_process`) is on this host and dead are marked; a tick orphaned by a
    kill -9 of serve alone is still alive, finishing its round, and is left alone, as is a run
    of another host or one killed before it recorded its process."""
    from prefect.client.schemas.filters import (
        FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterName, FlowRunFilterParentFlowRunId,
        FlowRunFilterState, FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    active = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING]))
    ticks = client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
        flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[campaign_name]), state=active))
    here = f"{socket.gethostname()}:"
    dead = [run for run in ticks if (run.infrastructure_pid or "").startswith(here)
            and run.infrastructure_pid.removeprefix(here).isdigit()
            and _process_gone(int(run.infrastructure_pid.removeprefix(here)))]
    if not dead:
        return 0
    rounds = client.read_flow_runs(flow_run_filter=FlowRunFilter(
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id for run in dead]), state=active))
    why = ("its process was killed (a serve stopped with SIGKILL, or a lost machine); the next serve "
           "marked it crashed, and the campaign's database says where its round stands")
    for run in [*rounds, *dead]:
        client.set_flow_run_state(run.id, Crashed(message=why), force=True)
    return len(dead)


@flow(name=FLOW_NAME, flow_run_name="{campaign_name}")
def scheduled_round_flow(
    campaign_name: str, max_rounds: int, database_url: str | None = None, dask_address: str | None = None,
    dask_workers: int | None = None,
) -> RoundSummary | State | None:
    """One tick of a schedule: advance the campaign by one round (None: nothing to do);
    ``dask_address`` / ``dask_workers`` score its active rounds as shards on Dask.

    Says on one line (two when it runs a round: its start, then how it ended) what the tick
    did: the round summary ``run`` prints, why it waits, why it skipped, or why it failed.
    A refusal of the campaign's data (:mod:`activelabel.flows.refusal`) is said in full once,
    then "still refused" while the next ticks find the same fault; the tick run then ends in
    a state named ``Refused`` (Failed) or ``Still refused`` (Cancelled) instead of raising.
    activelabel's warnings during the tick are tick lines too (:func:`warnings_as_tick_lines`)."""
    # No "Task run 'train-...' - Crash detected!" under serve's own stop line: the tick says how
    # its round ended itself (_tick_line), and the round records it.
    quiet_prefect_runs()
    with warnings_as_tick_lines():
        return _tick(campaign_name, max_rounds, database_url, dask_address, dask_workers)


def _tick(campaign_name: str, max_rounds: int, database_url: str | None, dask_address: str | None,
          dask_workers: int | None) -> RoundSummary | State | None:
    """:func:`scheduled_round_flow`'s work (its docstring says what a tick does)."""
    from activelabel.flows import refusal

    _record_process()
    previous = refusal.previous_refusal()
    try:
        engine = engine_for(database_url)
        campaign_id = lookup.campaign_id(engine, campaign_name)
        done = steps.completed_rounds(engine, campaign_id)
        if done >= max_rounds:
            log.info("Campaign %r has its %d rounds; nothing to do", campaign_name, max_rounds)
            _tick_line(f"campaign {campaign_name!r} has its {max_rounds} rounds; nothing to do")
            return None
        if previous is not None:  # the last tick was refused: no round subflow while it still is
            refusal.recheck(engine, campaign_id)

        def one_round() -> RoundSummary:
            _tick_line(round_start_line(engine, campaign_id, campaign_name))
            return round_flow(campaign_name, database_url, dask_address=dask_address, dask_workers=dask_workers)

        summary, holder = unless_busy(engine, campaign_id, one_round)
    except BaseException as error:
        if isinstance(error, ServiceUnavailableError):  # the round waits in its step
            _tick_line(f"waits: {error}; the next tick tries again")
        elif stop.stop_signal_in_chain(error) is None and refusal.is_refusal(error):
            _tick_line(refusal.refused_line(str(error), previous))
            return refusal.refused_state(str(error), previous)
        elif stop.stop_signal_in_chain(error) is None:  # a stop is said by serve itself
            _tick_line(f"failed: {type(error).__name__}: {error}")
        raise
    if holder is not None:
        log.info("Skipping this tick: %s is still working on campaign %r", holder, campaign_name)
        _tick_line(f"skipped: {holder} is still working on campaign {campaign_name!r}")
        return None
    assert summary is not None
    _tick_line(summary.describe())
    return summary


@dataclass(frozen=True)
class ServeEnd:
    """How a :func:`serve_campaign` ended.

    ``signum``: the stop signal (SIGINT, SIGTERM), None when the runner ended by itself;
    ``removed``: the deployment and its scheduled runs were deleted from the Prefect server;
    ``interrupted``: "round N at step S" when a tick was cutting through a round at the stop
    (it resumes from the database at the next run), else None.
    """

    signum: int | None
    removed: bool
    interrupted: str | None = None


def deployment_name(campaign_name: str) -> str:
    """The deployment ``serve`` creates for a campaign, as Prefect's CLI names it."""
    return f"{FLOW_NAME}/{campaign_name}"


def remove_leftovers(campaign_name: str, say: Callable[[str], None] = log.warning) -> int:
    """Delete the campaign's deployment if one is on the Prefect server already, with its
    scheduled runs; the number of those runs (0 when there was none). First mark the tick runs
    a killed serve left RUNNING as crashed (:func:`mark_dead_ticks_crashed`).

    A serve that ended normally left nothing (see :func:`serve_campaign`); one killed with
    SIGKILL (or a lost machine) left its deployment and its scheduled runs (up to 100 ahead,
    Prefect's ``PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS``, plus those that came due since),
    and Prefect starts the late ones at once when the deployment is served again: with ``--cron '0 3 * * *'`` a
    restart during the day would start a round off schedule. Deleting the deployment deletes all
    its scheduled runs on the server in one call (runs that already ran keep their history).
    ``say`` gets one line saying what was deleted."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterExpectedStartTime,
        FlowRunFilterState, FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound

    name = deployment_name(campaign_name)
    with get_client(sync_client=True) as client:
        crashed = mark_dead_ticks_crashed(client, campaign_name)
        marked = (f"marked {crashed} run{'s' if crashed != 1 else ''} a killed serve left running as crashed "
                  "(its process is gone)" if crashed else "")
        try:
            deployment = client.read_deployment_by_name(name)
        except ObjectNotFound:
            if marked:
                say(f"{marked[0].upper()}{marked[1:]} on the Prefect server (campaign {campaign_name!r})")
            return 0
        of_it = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        scheduled = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
        waiting = client.count_flow_runs(deployment_filter=of_it, flow_run_filter=FlowRunFilter(state=scheduled))
        late = client.count_flow_runs(deployment_filter=of_it, flow_run_filter=FlowRunFilter(
            state=scheduled,
            expected_start_time=FlowRunFilterExpectedStartTime(before_=datetime.now(timezone.utc))))
        client.delete_deployment(deployment.id)
    say(f"Deleted the deployment {name} and {waiting} scheduled runs that a serve stopped without "
        f"cleaning up left on the Prefect server ({late} late: they would have started at once)"
        + (f", and {marked}" if marked else "") + "; the schedule starts afresh")
    return waiting


#: Tags of the deployment that name the serve serving it (process id, host).
PID_TAG, HOST_TAG = "activelabel-serve-pid:", "activelabel-serve-host:"


def _served_by(tags: list[str]) -> tuple[int, str] | None:
    """(pid, host) of the serve that made a deployment, from its tags; None for one made by
    an older serve (no such tags)."""
    pid = next((t.removeprefix(PID_TAG) for t in tags if t.startswith(PID_TAG)), None)
    host = next((t.removeprefix(HOST_TAG) for t in tags if t.startswith(HOST_TAG)), None)
    return (int(pid), host) if pid is not None and pid.isdigit() and host is not None else None


def live_server(campaign_name: str, stale_after: timedelta = STALE_AFTER) -> str | None:
    """"process P on H" when a live ``serve`` serves the campaign now, else None.

    Judged as the campaign's lease judges its holder (:mod:`activelabel.storage.lease`): on
    this host, by whether process P is alive; on another host, by the deployment's
    ``last_polled`` (a serving runner polls for its runs every few seconds) being younger than
    ``stale_after``. A deployment left by a killed serve is no live server: the next start
    deletes it (:func:`remove_leftovers`)."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(deployment_name(campaign_name))
        except ObjectNotFound:
            return None
    by = _served_by(list(deployment.tags or []))
    if by is None:
        return None
    pid, host = by
    if host == socket.gethostname():
        alive = pid != os.getpid() and pid_alive(pid)
    else:
        polled = deployment.last_polled
        alive = polled is not None and datetime.now(timezone.utc) - polled < stale_after
    return f"process {pid} on {host}" if alive else None


def _remove_deployment(campaign_name: str, deployment_id: UUID | None) -> bool:
    """Delete the deployment (the server deletes its scheduled runs with it); False when the
    server cannot be reached or refuses (logged)."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            if deployment_id is None:
                try:
                    deployment_id = client.read_deployment_by_name(deployment_name(campaign_name)).id
                except ObjectNotFound:
                    return True
            client.delete_deployment(deployment_id)
    except ObjectNotFound:
        return True
    except Exception as error:  # the stop must finish; say what stays behind
        log.warning("Could not delete the deployment %s from the Prefect server (%s)",
                    deployment_name(campaign_name), error)
        return False
    return True


def _interrupted_round(campaign_name: str, signum: int | None) -> str | None:
    """"round N at step S" when a stop cut the campaign's latest round mid-way (see
    :func:`activelabel.flows.guard.interrupted_round`), else None. Asked only when a tick was
    running at the stop.

    The stored reason then says what really happened. A tick runs in a child of serve
    (Prefect 3's ``Runner`` starts a served flow with ``run_flow_in_subprocess``, a
    multiprocessing spawn in serve's process group). Serve's stop reaches it as the runner
    stops (``CancellationManager.cancel_all``): a cancel message on the runner's control
    channel, then SIGTERM to the child's pid, SIGKILL after a 30 s grace period. So the round
    itself records "stopped by SIGTERM" even for a Ctrl-C ("stopped by Ctrl-C" when a
    terminal's Ctrl-C reached the whole process group first). Rewritten here, in the serve
    process once the child is gone, to "stopped because serve was stopped (Ctrl-C)" with what
    continues it."""
    from activelabel.storage import session_scope
    from activelabel.storage.repository import latest_round

    engine = engine_for(None)
    campaign_id = lookup.campaign_id(engine, campaign_name)
    cut = interrupted_round(engine, campaign_id)
    if cut is None or signum is None:
        return cut
    with session_scope(engine) as session:
        last = latest_round(session, campaign_id)
        if last is not None and last.status == RoundStatus.failed and (last.error or "").startswith("stopped by "):
            last.error = (f"stopped because serve was stopped ({stop.signal_name(signum)}): Prefect's runner "
                          f"ended the tick running it ({last.error}); the next `activelabel serve` "
                          "(or `activelabel resume`) continues it from this step")
    return cut


def _stoppable_runner(name: str):
    """A Prefect ``Runner`` that Ctrl-C and SIGTERM stop gracefully (Prefect's own SIGTERM
    handler does; Ctrl-C would otherwise raise through its event loop, which then leaves the
    deployment behind). Records the signal, and whether a tick was running when it came."""
    from prefect.runner import Runner

    class StoppableRunner(Runner):
        stop_signal: int | None = None
        busy_at_stop = False

        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            self.request_stop(int(signal.SIGTERM))

        def request_stop(self, signum: int, _frame: Any = None) -> None:
            if self.stop_signal is not None:
                return  # already stopping: a running tick gets Prefect's grace period
            self.stop_signal = signum
            if not self.started or self._loop is None:
                raise stop.Stopped(signum)  # still starting: unwind, the finally cleans up
            self.busy_at_stop = not self.has_slots_available()
            self.stopping = True
            self.execute_in_background(self.astop)

    # one tick at a time from this process; the lease guards other processes
    return StoppableRunner(name=name, pause_on_shutdown=False, limit=1)


@contextmanager
def _ticks_deaf_to_ctrl_c() -> Iterator[None]:
    """Start each tick's process with SIGINT blocked, so a terminal's Ctrl-C (sent to the whole
    foreground process group, tick included) stops serve alone.

    Without this the tick's child gets the Ctrl-C too and dies wherever it is (often importing
    torch) with a ~40-line ``KeyboardInterrupt`` traceback on serve's terminal. Serve's own stop
    ends the tick anyway, the way it ends it for SIGTERM: the runner cancels it, then sends it
    SIGTERM, and the round records where it stopped. Prefect's runner starts an ``add_flow``
    tick through ``prefect.runner._starter_direct.run_flow_in_subprocess`` (a multiprocessing
    spawn; the module says to patch that reference to override it); a blocked signal mask is
    inherited through fork and exec, from whichever thread starts the child, and Python never
    unblocks it. Serve's own threads keep SIGINT unblocked, so serve still gets it."""
    try:
        from prefect.runner import _starter_direct
    except ImportError:  # another Prefect layout: ticks get Ctrl-C as before, nothing breaks
        yield
        return
    original = getattr(_starter_direct, "run_flow_in_subprocess", None)
    if original is None:
        yield
        return

    def started_deaf(*args: Any, **kwargs: Any) -> Any:
        before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return original(*args, **kwargs)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)

    _starter_direct.run_flow_in_subprocess = started_deaf
    try:
        yield
    finally:
        _starter_direct.run_flow_in_subprocess = original


def serve_campaign(
    campaign_name: str, *, max_rounds: int, interval: float | None = None, cron: str | None = None,
    dask_address: str | None = None, dask_workers: int | None = None,
    on_started: Callable[[str], None] | None = None, say: Callable[[str], None] = log.warning,
) -> ServeEnd:
    """Create the deployment ``activelabel-scheduled-round/<campaign>`` and run its ticks here
    until Ctrl-C or SIGTERM; then delete the deployment, and with it its scheduled runs.

    A deployment left by a serve that could not clean up (SIGKILL) is deleted first, with its
    scheduled runs, so its late runs do not start at once (:func:`remove_leftovers`).
    ``on_started(deployment name)`` is called once the deployment exists; ``say`` gets that
    one line about leftovers.

    Raises:
        ConfigError: both or neither of ``interval``/``cron``, a wrong cron expression, no
            ``PREFECT_API_URL`` or no server there, a wrong database URL.

    A stop signal is no exception here: it ends the serve, and :class:`ServeEnd` says which.
    """
    check_schedule_options(interval, cron)
    check_prefect_server(prefect_api_url())
    if cron is not None:
        check_cron(cron)
    engine_for(None)  # fail here, not at the first tick, on a wrong database URL
    serving = live_server(campaign_name)
    if serving is not None:
        raise CampaignStateError(
            f"campaign {campaign_name!r} is already served by {serving} (the Prefect deployment "
            f"{deployment_name(campaign_name)}); stop that serve first (Ctrl-C there, or kill {serving.split()[1]})")
    runner = _stoppable_runner(campaign_name)
    # Signal handlers can be set in the main thread only (elsewhere Prefect's own stop applies).
    in_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, runner.request_stop) for s in stop.STOP_SIGNALS} if in_main else {}
    deployment_id: UUID | None = None
    try:
        remove_leftovers(campaign_name, say)
        deployment_id = runner.add_flow(
            scheduled_round_flow, name=campaign_name, interval=interval, cron=cron,
            # A scheduler address is no secret; the database URL stays out of the parameters.
            tags=[f"{PID_TAG}{os.getpid()}", f"{HOST_TAG}{socket.gethostname()}"],
            parameters={"campaign_name": campaign_name, "max_rounds": max_rounds,
                        **({"dask_address": dask_address} if dask_address else {}),
                        **({"dask_workers": dask_workers} if dask_workers else {})},
        )
        if on_started is not None:
            on_started(deployment_name(campaign_name))
        with _ticks_deaf_to_ctrl_c():
            asyncio.run(runner.start())
    except stop.Stopped as stopped:
        runner.stop_signal = stopped.signum
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        removed = _remove_deployment(campaign_name, deployment_id)
    return ServeEnd(runner.stop_signal, removed,
                    _interrupted_round(campaign_name, runner.stop_signal) if runner.busy_at_stop else None)
