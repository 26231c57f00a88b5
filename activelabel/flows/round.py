"""Prefect flows: one round, and a campaign of rounds. Thin wiring; the work is in ``campaign``.

Tasks take ids, never arrays or models: the database carries state between steps, so a task
retried or rerun in another process sees exactly what was committed.
"""

from __future__ import annotations

import logging

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from activelabel.campaign import steps
from activelabel.campaign.summary import RoundSummary, round_summary
from activelabel.flows.engines import engine_for
from activelabel.progress import reporter

log = logging.getLogger(__name__)


@task(name="train", cache_policy=NO_CACHE)
def train_task(database_url: str | None, round_id: int) -> None:
    steps.train_step(engine_for(database_url), round_id)


@task(name="score", cache_policy=NO_CACHE)
def score_task(database_url: str | None, round_id: int) -> None:
    steps.score_step(engine_for(database_url), round_id)


@task(name="select", cache_policy=NO_CACHE)
def select_task(database_url: str | None, round_id: int) -> None:
    steps.select_step(engine_for(database_url), round_id)


@task(name="push", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 4, 16])
def push_task(database_url: str | None, round_id: int) -> None:
    steps.push_step(engine_for(database_url), round_id)


@task(name="sync", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[1, 4, 16])
def sync_task(database_url: str | None, round_id: int) -> steps.SyncResult:
    return steps.sync_step(engine_for(database_url), round_id)


@flow(name="activelabel-round", flow_run_name="{campaign_name}")
def round_flow(campaign_name: str, database_url: str | None = None) -> RoundSummary:
    """Run (or resume) the campaign's current round: train → score → select → push → sync."""
    engine = engine_for(database_url)
    campaign_id = steps.campaign_id(engine, campaign_name)
    round_id = steps.start_round(engine, campaign_id)
    progress = reporter()
    progress.start_round(round_summary(engine, round_id).index)
    try:
        train_task(database_url, round_id)
        score_task(database_url, round_id)
        select_task(database_url, round_id)
        push_task(database_url, round_id)
        sync_task(database_url, round_id)
    except BaseException as error:
        steps.mark_failed(engine, round_id, error)
        progress.finish_round(f"failed: {error}")
        raise
    summary = round_summary(engine, round_id)
    progress.finish_round(summary.describe())
    return summary


@flow(name="activelabel-campaign", flow_run_name="{campaign_name}")
def campaign_flow(campaign_name: str, rounds: int, database_url: str | None = None) -> list[RoundSummary]:
    """Run rounds until the campaign has ``rounds`` complete ones (resuming an unfinished one)."""
    engine = engine_for(database_url)
    campaign_id = steps.campaign_id(engine, campaign_name)
    summaries = []
    while steps.completed_rounds(engine, campaign_id) < rounds:
        summary = round_flow(campaign_name, database_url)
        summaries.append(summary)
        if summary.status != "complete":
            log.warning("Round %d is %s; stopping the campaign here", summary.index, summary.status)
            break
    return summaries
