"""Labeling rounds on a schedule: a Prefect deployment that advances a campaign every tick.

Each scheduled run advances the campaign by at most one round: it resumes the current round
(for a Label Studio campaign: collects labels, and completes the round when enough arrived) or
starts the next one, until ``max_rounds`` are complete. A tick that finds a round still running
elsewhere skips quietly. Schedules need a Prefect server (``PREFECT_API_URL``); the database
URL comes from the serving process's environment, never from the deployment's parameters.
"""

from __future__ import annotations

import logging
import os

from prefect import flow

from activelabel.campaign import lookup, steps
from activelabel.campaign.summary import RoundSummary
from activelabel.errors import ConfigError, RoundAlreadyRunningError
from activelabel.flows.engines import engine_for
from activelabel.flows.round import round_flow
from activelabel.storage.lease import live_holder

log = logging.getLogger(__name__)


@flow(name="activelabel-scheduled-round", flow_run_name="{campaign_name}")
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


def serve_campaign(
    campaign_name: str, *, max_rounds: int, interval: float | None = None, cron: str | None = None,
    dask_address: str | None = None, dask_workers: int | None = None,
) -> None:
    """Create the deployment ``activelabel-scheduled-round/<campaign>`` and run its ticks here.

    Blocks until interrupted (Ctrl-C); scheduled runs stay on the Prefect server.
    """
    if (interval is None) == (cron is None):
        raise ConfigError("give exactly one of --interval SECONDS or --cron 'EXPRESSION'")
    if interval is not None and interval <= 0:
        raise ConfigError(f"--interval must be a positive number of seconds, got {interval}")
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            "schedules need a Prefect server: run `prefect server start` and export "
            "PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    engine_for(None)  # fail here, not at the first tick, on a wrong database URL
    scheduled_round_flow.serve(
        name=campaign_name,
        interval=interval,
        cron=cron,
        # A scheduler address is no secret; the database URL stays out of the parameters.
        parameters={"campaign_name": campaign_name, "max_rounds": max_rounds,
                    **({"dask_address": dask_address} if dask_address else {}),
                    **({"dask_workers": dask_workers} if dask_workers else {})},
        print_starting_message=True,
        limit=1,  # one tick at a time from this process; the lease guards other processes
    )
