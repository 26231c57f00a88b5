"""Stopping `activelabel serve` stops its schedule; a killed serve's late runs never fire.

A real `activelabel serve` against the suite's shared Prefect server (tests/conftest.py): after
Ctrl-C (SIGINT) and SIGTERM it exits 0 with one plain line, and the server holds neither its
deployment nor a scheduled run; after SIGKILL the deployment stays, and the next start deletes
it with its scheduled runs (a late one included) before anything runs, saying so on one line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from activelabel.campaign import CampaignConfig, prepare_campaign
from activelabel.storage import open_engine

START_BOUND_S = 300  # a serve start on a loaded machine: torch + Prefect imports, the data check
STOP_BOUND_S = 120  # the stop: runner shutdown and one DELETE
NEVER = "0 3 1 1 *"  # 3 am on 1 January: no tick during the test


def _deployment(name: str):
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_deployment_by_name(f"activelabel-scheduled-round/{name}")
        except ObjectNotFound:
            return None


def _scheduled_runs(deployment_id) -> list:
    """The deployment's runs in a Scheduled state (Late is one), read by its id: they outlive a
    deleted deployment only if the server failed to delete them."""
    from prefect import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
    from prefect.client.schemas.filters import FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
        )


class Served:
    """One `activelabel serve` subprocess in its own session, its output in a file."""

    def __init__(self, name: str, env: dict[str, str], folder: Path, tag: str, *extra: str) -> None:
        self.log = folder / f"serve-{tag}.log"
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "activelabel.cli", "serve", name, "--cron", NEVER, *extra],
                cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text()

    def wait_serving(self) -> None:
        deadline = time.monotonic() + START_BOUND_S
        while "Serving campaign" not in self.text():
            assert self.process.poll() is None, self.text()[-3000:]
            assert time.monotonic() < deadline, self.text()[-3000:]
            time.sleep(0.5)
        time.sleep(2)  # the runner enters its loop after the line

    def stop(self, signum: int) -> int:
        try:
            self.process.send_signal(signum)
            return self.process.wait(timeout=STOP_BOUND_S)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _schedule(deployment_id, hours: float):
    """A scheduled run of the deployment, ``hours`` from now (negative: late), as the server's
    scheduler makes them."""
    from prefect import get_client
    from prefect.states import Scheduled

    when = datetime.now(timezone.utc) + timedelta(hours=hours)
    with get_client(sync_client=True) as client:
        return client.create_flow_run_from_deployment(deployment_id, state=Scheduled(scheduled_time=when)).id


def _exists(flow_run_id) -> bool:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_flow_run(flow_run_id)
        except ObjectNotFound:
            return False
    return True


@pytest.mark.prefect_server
@pytest.mark.slow
def test_stopping_serve_removes_its_schedule_and_a_killed_serves_runs_are_deleted_at_the_next_start(
        tmp_path, prefect_api_url):
    name = f"serve-life-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 'campaign.db'}"
    prepare_campaign(open_engine(url), CampaignConfig(
        name=name, strategy="margin", rounds=2, batch_size=5, initial_labeled=10, mc_samples=2, epochs=1,
        device="cpu",
    ))
    env = {**os.environ, "PREFECT_API_URL": prefect_api_url, "ACTIVELABEL_DATABASE_URL": url,
           "PREFECT_HOME": str(tmp_path / "prefect-client")}
    again = f"rounds continue with `activelabel serve {name} --cron '{NEVER}'`"

    # Ctrl-C: the normal way out. Exit 0, one plain line (naming the options to give again),
    # nothing left on the server.
    first = Served(name, env, tmp_path, "sigint", "--rounds", "2")
    first.wait_serving()
    served = _deployment(name)
    assert served is not None
    coming = _schedule(served.id, 2)
    assert first.stop(signal.SIGINT) == 0, first.text()[-3000:]
    assert first.text().splitlines()[-1] == (
        f"serve stopped by Ctrl-C: the schedule of campaign '{name}' is removed from the Prefect server; "
        f"{again[:-1]} --rounds 2`")
    assert "error" not in first.text().lower()
    assert _deployment(name) is None
    assert _scheduled_runs(served.id) == [] and not _exists(coming)

    # SIGKILL: no cleanup is possible; the deployment stays and runs pile up (one of them late).
    killed = Served(name, env, tmp_path, "sigkill")
    killed.wait_serving()
    assert killed.stop(signal.SIGKILL) == -signal.SIGKILL
    left = _deployment(name)
    late, later = _schedule(left.id, -2), _schedule(left.id, 2)
    assert {run.id for run in _scheduled_runs(left.id)} >= {late, later}

    # The next start deletes them before serving (the late one never runs), on one line.
    third = Served(name, env, tmp_path, "sigterm")
    third.wait_serving()
    leftovers = [line for line in third.text().splitlines() if line.startswith("Deleted the deployment")]
    assert len(leftovers) == 1, third.text()[-3000:]
    assert f"activelabel-scheduled-round/{name} and " in leftovers[0]
    assert "(1 late: they would have started at once)" in leftovers[0]
    assert not _exists(late) and not _exists(later)
    assert _scheduled_runs(left.id) == []
    served = _deployment(name)
    assert served is not None  # served afresh
    coming = _schedule(served.id, 2)

    # SIGTERM (a service manager's stop): the same clean end as Ctrl-C.
    assert third.stop(signal.SIGTERM) == 0, third.text()[-3000:]
    assert third.text().splitlines()[-1] == (
        f"serve stopped by SIGTERM: the schedule of campaign '{name}' is removed from the Prefect server; {again}")
    assert _deployment(name) is None
    assert _scheduled_runs(served.id) == [] and not _exists(coming)
