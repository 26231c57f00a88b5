"""A Dask worker that cannot read the round from its database (here: a real `dask worker`
started without ACTIVELABEL_DATABASE_URL / ACTIVELABEL_DATABASE_PASSWORD, for a campaign on
PostgreSQL) fails the round's scoring with an error that names the worker, the (masked) URL it
used and the environment to set; the run does not claim it lost the campaign's database, the
round keeps its step, and the worker creates no database file in its folder. Real PostgreSQL,
real Dask scheduler and worker processes, real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from activelabel.storage import Round, RoundStatus, Score, open_engine, session_scope

from test_cli import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from tests_support_postgres import throwaway_schema_url  # noqa: E402

DEMO = ("demo", "--campaign", "daskdb", "--rounds", "1", "--batch-size", "8", "--initial-labeled", "16",
        "--mc-samples", "3", "--epochs", "2", "--fixed-epochs", "--strategy", "bald")
DASK = str(Path(sys.executable).with_name("dask"))
START_BOUND_S = 180  # generous: the machine may be busy with other tests


def _round_one(url: str):
    engine = open_engine(url)
    try:
        with session_scope(engine) as session:
            rnd = session.scalar(select(Round).where(Round.index == 1))
            scores = session.scalar(select(func.count()).select_from(Score).where(Score.round_id == rnd.id))
            return rnd.status, rnd.resume_step, scores
    finally:
        engine.dispose()


def _start(args: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)  # the group this test started (nanny + worker)
        process.wait(timeout=60)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.dask
def test_a_worker_without_the_database_environment_is_named_and_the_round_keeps_its_step(tmp_path):
    from distributed import Client

    with throwaway_schema_url("al_daskdb") as url:
        crashed = run_cli(*DEMO, "--database-url", url, cwd=tmp_path, env={"ACTIVELABEL_CRASH_AT": "score"})
        assert crashed.returncode != 0 and _round_one(url) == (RoundStatus.scoring, RoundStatus.scoring, 0)

        scrubbed = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVELABEL_")}
        folder, worker_cwd = tmp_path / "scheduler", tmp_path / "worker"
        folder.mkdir()
        worker_cwd.mkdir()
        scheduler_file = folder / "scheduler.json"
        scheduler = _start([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                            "--scheduler-file", str(scheduler_file)], folder, scrubbed)
        worker = None
        try:
            deadline = time.monotonic() + START_BOUND_S
            while not scheduler_file.exists() and time.monotonic() < deadline:
                time.sleep(0.5)
            assert scheduler_file.exists(), "the Dask scheduler did not start"
            worker = _start([DASK, "worker", "--scheduler-file", str(scheduler_file), "--nworkers", "1",
                             "--nthreads", "1", "--no-dashboard"], worker_cwd, scrubbed)
            with Client(scheduler_file=str(scheduler_file), timeout="60s") as client:
                client.wait_for_workers(1, timeout=START_BOUND_S)
                address = client.scheduler.address

            resumed = run_cli("resume", "daskdb", "--database-url", url, "--dask-address", address, cwd=tmp_path)
        finally:
            for process in (worker, scheduler):
                if process is not None:
                    _stop(process)

        assert resumed.returncode == 1, resumed.stderr[-3000:]
        errors = [line for line in resumed.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, resumed.stderr[-3000:]
        error = errors[0]
        shown = make_url(url)
        assert "Dask worker tcp://127.0.0.1:" in error and "on host" in error
        assert f"{shown.username}@{shown.host}:{shown.port}" in error  # the URL it used, no password
        assert "ACTIVELABEL_DATABASE_URL" in error and "ACTIVELABEL_DATABASE_PASSWORD" in error
        assert "docs/scale.md" in error
        assert "lost the database" not in resumed.stderr and shown.password not in resumed.stderr
        status, step, scores = _round_one(url)
        assert step == RoundStatus.scoring and scores == 0  # resumes at scoring; nothing half-written
        assert status in (RoundStatus.failed, RoundStatus.scoring)
        assert not list(worker_cwd.rglob("*.db")), sorted(worker_cwd.rglob("*"))
