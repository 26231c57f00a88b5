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
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from prefect import flow

from activelabel import stop
from activelabel.campaign import lookup, steps
from activelabel.campaign.summary import RoundSummary
from activelabel.errors import ConfigError, RoundAlreadyRunningError
from activelabel.flows.engines import engine_for
from activelabel.flows.round import round_flow
from activelabel.serve_checks import check_prefect_server, check_schedule_options, prefect_api_url
from activelabel.storage import RoundStatus
from activelabel.storage.lease import live_holder

log = logging.getLogger(__name__)

FLOW_NAME = "activelabel-scheduled-round"


@flow(name=FLOW_NAME, flow_run_name="{campaign_name}")
def scheduled_round_flow(
    campaign_name: str, max_rounds: int, database_url: str | None = None, dask_address: str | None = None,
    dask_workers: int | None = None,
) -> RoundSummary | None:
    """One tick of a schedule: advance the campaign by one round (None: nothing to do);
    ``dask_address`` / ``dask_workers`` score its active rounds as shards on Dask."""
    engine = engine_for(database_url)
    campaign_id = lookup.campaign_id(engine, campaign_name)
    done = steps.completed_rounds(engine, campaign_id)
    if done >= max_rounds:
        log.info("Campaign %r has its %d rounds; nothing to do", campaign_name, max_rounds)
        return None
    busy = live_holder(engine, campaign_id)
    if busy is not None:
        log.info("Skipping this tick: %s is still working on campaign %r", busy, campaign_name)
        return None
    try:
        return round_flow(campaign_name, database_url, dask_address=dask_address, dask_workers=dask_workers)
    except RoundAlreadyRunningError as busy:
        log.info("Skipping this tick: %s", busy)
        return None


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


def _check_cron(cron: str) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except ValueError as error:
        errors = error.errors() if hasattr(error, "errors") else []  # pydantic's ValidationError
        reason = str(errors[0].get("msg", error)).removeprefix("Value error, ") if errors else str(error)
        raise ConfigError(f"--cron {cron!r} is not a cron expression ({reason}); "
                          "e.g. '0 3 * * *' for 3 am daily") from None


def remove_leftovers(campaign_name: str, say: Callable[[str], None] = log.warning) -> int:
    """Delete the campaign's deployment if one is on the Prefect server already, with its
    scheduled runs; the number of those runs (0 when there was none).

    A serve that ended normally left nothing (see :func:`serve_campaign`); one killed with
    SIGKILL (or a lost machine) left its deployment and ~100 scheduled runs, and Prefect starts
    the late ones at once when the deployment is served again: with ``--cron '0 3 * * *'`` a
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
        try:
            deployment = client.read_deployment_by_name(name)
        except ObjectNotFound:
            return 0
        of_it = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        scheduled = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
        waiting = client.count_flow_runs(deployment_filter=of_it, flow_run_filter=FlowRunFilter(state=scheduled))
        late = client.count_flow_runs(deployment_filter=of_it, flow_run_filter=FlowRunFilter(
            state=scheduled,
            expected_start_time=FlowRunFilterExpectedStartTime(before_=datetime.now(timezone.utc))))
        client.delete_deployment(deployment.id)
    say(f"Deleted the deployment {name} and {waiting} scheduled runs that a serve stopped without "
        f"cleaning up left on the Prefect server ({late} late: they would have started at once); "
        "the schedule starts afresh")
    return waiting


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


_WORKING = (RoundStatus.training, RoundStatus.scoring, RoundStatus.selecting, RoundStatus.pushing)


def _interrupted_round(campaign_name: str) -> str | None:
    """"round N at step S" when the campaign's latest round was left between its steps (a
    stopped tick marks it failed at its step) and no live process holds it, else None. Asked
    only when a tick was running at the stop."""
    from activelabel.storage import session_scope
    from activelabel.storage.repository import latest_round

    engine = engine_for(None)
    campaign_id = lookup.campaign_id(engine, campaign_name)
    with session_scope(engine) as session:
        last = latest_round(session, campaign_id)
        if last is None:
            return None
        index, status, step = last.index, last.status, last.failed_step
    if status == RoundStatus.failed:
        status = step
    if status not in _WORKING or live_holder(engine, campaign_id) is not None:
        return None
    return f"round {index} at step {status.value}"


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
        _check_cron(cron)
    engine_for(None)  # fail here, not at the first tick, on a wrong database URL
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
            parameters={"campaign_name": campaign_name, "max_rounds": max_rounds,
                        **({"dask_address": dask_address} if dask_address else {}),
                        **({"dask_workers": dask_workers} if dask_workers else {})},
        )
        if on_started is not None:
            on_started(deployment_name(campaign_name))
        asyncio.run(runner.start())
    except stop.Stopped as stopped:
        runner.stop_signal = stopped.signum
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        removed = _remove_deployment(campaign_name, deployment_id)
    return ServeEnd(runner.stop_signal, removed,
                    _interrupted_round(campaign_name) if runner.busy_at_stop else None)
