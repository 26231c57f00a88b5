"""Prefect flow of an experiment: every unfinished arm's campaign as a subflow, a few at a time.

Prefect shows the experiment as one flow run with a subflow per campaign
(:func:`activelabel.flows.round.campaign_flow`). With one worker they run one after the other
in this process; with more, each runs inside a task on a process-pool task runner bounded by
``workers``. An arm that fails does not stop the others: its error is
returned, and a rerun continues it from the database.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shlex
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from activelabel.flows.quiet import quiet_prefect_runs
from activelabel.flows.round import campaign_flow

log = logging.getLogger(__name__)


@task(name="campaign", task_run_name="{campaign_name}", cache_policy=NO_CACHE)
def campaign_task(campaign_name: str, rounds: int, database_url: str | None = None) -> int:
    """Run one arm up to ``rounds`` complete rounds; the number of rounds run now.

    In a worker process, which does not inherit the CLI's logger levels: unless -v, no Prefect
    run lines, so a Ctrl-C's "Crash detected! Execution was aborted by a termination signal."
    does not follow the CLI's own stop line (trial 17 F3)."""
    quiet_prefect_runs()
    from activelabel import stop

    stop.record_swallowed_stops()
    return len(campaign_flow(campaign_name, rounds, database_url))


@flow(name="activelabel-compare", flow_run_name="{experiment_name}")
def compare_flow(
    experiment_name: str, campaign_names: list[str], rounds: int, database_url: str | None = None,
    workers: int = 1,
) -> dict[str, str]:
    """Run the given arms of ``experiment_name``; returns ``{campaign: error}`` for failed ones.

    One worker: the campaigns run one after the other in this process, so Ctrl-C stops the
    current round as it stops `activelabel run`. More: each runs in a worker process.
    """
    failed: dict[str, str] = {}
    if workers == 1:
        for name in campaign_names:
            try:
                campaign_flow(name, rounds, database_url)
            except Exception as error:  # one arm's failure must not stop the others
                _failed(failed, experiment_name, name, error)
        return failed
    try:
        futures = {name: campaign_task.submit(name, rounds, database_url) for name in campaign_names}
        for name, future in futures.items():
            try:
                future.result()
            except Exception as error:
                _failed(failed, experiment_name, name, error)
    except BaseException:
        # A stop: end the workers now. They ignore Ctrl-C (_workers_ignore_ctrl_c), and the task
        # runner's exit would otherwise wait for their campaigns to finish.
        _end_workers()
        raise
    return failed


def _end_workers() -> None:
    for child in multiprocessing.active_children():
        child.terminate()


def _failed(failed: dict[str, str], experiment_name: str, name: str, error: Exception) -> None:
    log.warning("Campaign %r of experiment %r failed: %s", name, experiment_name, error)
    failed[name] = f"{type(error).__name__}: {error}"


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Worker processes started inside this block ignore Ctrl-C from their first instruction.

    A Ctrl-C reaches every process of the terminal's group. A worker still starting (Python's
    start-up, the imports before the pool runs any of our code) died of it with tracebacks
    ("Fatal Python error: init_import_site", KeyboardInterrupt through the pool's result thread;
    trial 18 F19). So the pool starts its workers through a two-line ``/bin/sh`` wrapper that sets
    SIGINT to ignored and ``exec``s Python: an ignored signal survives ``exec``, and Python then
    installs no KeyboardInterrupt handler. The parent keeps its own Ctrl-C (nothing is ignored
    in it, so no Ctrl-C is lost) and ends the workers itself (:func:`run_compare`); each campaign
    resumes from its last committed step. Without ``/bin/sh`` the workers start as before.
    """
    from multiprocessing import spawn

    python = spawn.get_executable()
    if os.name != "posix" or not os.path.exists("/bin/sh"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="activelabel-workers-") as folder:
        wrapper = Path(folder) / "python-without-ctrl-c"
        wrapper.write_text(f"#!/bin/sh\ntrap '' INT\nexec {shlex.quote(os.fsdecode(python))} \"$@\"\n")
        wrapper.chmod(0o700)
        spawn.set_executable(str(wrapper))
        try:
            yield
        finally:
            spawn.set_executable(python)


def run_compare(
    experiment_name: str, campaign_names: list[str], rounds: int, *, workers: int = 1,
    database_url: str | None = None,
) -> dict[str, str]:
    """:func:`compare_flow` with at most ``workers`` campaigns running at once.

    Processes, not threads: torch's random generator is global to a process, so two campaigns
    training in threads would draw each other's dropout masks and lose reproducibility. When
    this process is stopped (Ctrl-C, SIGTERM) the worker processes are ended too; every
    campaign resumes from its last committed step on the next run.
    """
    if workers < 1:
        from activelabel.errors import ConfigError

        raise ConfigError(f"workers must be at least 1, got {workers}")
    runner = ProcessPoolTaskRunner(max_workers=workers) if workers > 1 else ThreadPoolTaskRunner(max_workers=1)
    try:
        with _workers_ignore_ctrl_c() if workers > 1 else contextlib.nullcontext():
            return compare_flow.with_options(task_runner=runner)(
                experiment_name, campaign_names, rounds, database_url, workers)
    except BaseException:
        _end_workers()
        raise
