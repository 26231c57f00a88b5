"""Crash anywhere, rerun, and end exactly where an uninterrupted run ends (real processes).

Each crash is a real SIGKILL of the `activelabel demo` process at a step, after that step's
work and before its commit (ACTIVELABEL_CRASH_AT). The rerun resumes from the database alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from activelabel.storage import (
    Annotation,
    CampaignLease,
    Round,
    Sample,
    Score,
    Selection,
    open_engine,
    session_scope,
)

EXE = str(Path(sys.executable).with_name("activelabel"))
DEMO = ("demo", "--campaign", "crashy", "--rounds", "2", "--batch-size", "8",
        "--initial-labeled", "16", "--mc-samples", "3", "--epochs", "2", "--fixed-epochs", "--strategy", "bald")


def session_processes(session: int) -> dict[int, str]:
    """Live (not zombie) processes of a session, by pid: their command lines."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        if fields[0] != "Z" and int(fields[3]) == session:
            found[int(stat.parent.name)] = cmdline.strip()
    return found


def children(pid: int) -> dict[int, str]:
    """Direct children of ``pid`` (all its threads), by pid: their command lines."""
    pids = []
    for tasks in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids += [int(p) for p in tasks.read_text().split()]
        except OSError:
            pass
    return {p: c for p, c in session_processes(os.getsid(pid)).items() if p in pids} if pids else {}


def assert_none_left(session: int, bound_s: float = 60) -> None:
    """No process of ``session`` may outlive its leader (the `activelabel` CLI) for ``bound_s``."""
    deadline = time.monotonic() + bound_s
    while (left := session_processes(session)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == {}, f"left behind after the CLI ended: {left}"


def run_demo(folder: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `activelabel demo` to its end (or its crash), then check it left no process behind.

    ``env`` overrides the environment; a None value removes the variable.
    """
    full_env = {**os.environ, "PREFECT_HOME": str(folder / "prefect-home"), **(env or {})}
    full_env = {key: value for key, value in full_env.items() if value is not None}
    # Files, not pipes: a process left behind would hold a pipe open and hang the test.
    with open(folder / "stdout.txt", "w+") as out, open(folder / "stderr.txt", "w+") as err:
        process = subprocess.Popen(
            [EXE, *DEMO, *extra], cwd=folder, env=full_env, stdout=out, stderr=err,
            text=True, start_new_session=True,
        )
        try:
            process.wait(timeout=600)
            assert_none_left(process.pid)  # its own session: session id == its pid
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # cleanup only; asserted above
            except ProcessLookupError:
                pass
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(process.args, process.returncode, out.read(), err.read())


def snapshot(folder: Path) -> dict:
    engine = open_engine(f"sqlite:///{folder / 'activelabel.db'}")
    with session_scope(engine) as session:
        snap = {
            "rounds": session.execute(
                select(Round.index, Round.status, Round.labeled_count, Round.model_version,
                       Round.test_accuracy, Round.pool_count, Round.mean_selected_score)
                .order_by(Round.index)
            ).all(),
            "selections": session.execute(
                select(Round.index, Sample.uri, Selection.rank, Selection.external_task_id)
                .join(Round, Round.id == Selection.round_id).join(Sample, Sample.id == Selection.sample_id)
                .order_by(Round.index, Selection.rank)
            ).all(),
            "scores": session.execute(
                select(Round.index, Sample.uri, Score.strategy, Score.value)
                .join(Round, Round.id == Score.round_id).join(Sample, Sample.id == Score.sample_id)
                .order_by(Round.index, Sample.uri)
            ).all(),
            "annotations": session.execute(
                select(Sample.uri, Annotation.label, Annotation.external_id)
                .join(Sample, Sample.id == Annotation.sample_id).order_by(Sample.uri)
            ).all(),
            "leases": session.scalars(select(CampaignLease)).all(),
        }
    engine.dispose()
    return snap


@pytest.mark.slow
def test_sigkill_in_every_step_then_rerun_equals_an_uninterrupted_run(tmp_path):
    reference_dir, crashed_dir = tmp_path / "reference", tmp_path / "crashed"
    reference_dir.mkdir()
    crashed_dir.mkdir()
    assert run_demo(reference_dir).returncode == 0
    reference = snapshot(reference_dir)
    assert [r.status.value for r in reference["rounds"]] == ["complete", "complete"]

    for step in ("train", "score", "select", "push", "sync"):
        killed = run_demo(crashed_dir, env={"ACTIVELABEL_CRASH_AT": step, "ACTIVELABEL_CRASH_ROUND": "2"})
        assert killed.returncode == -signal.SIGKILL, (step, killed.stderr[-2000:])
        during = snapshot(crashed_dir)
        # Round 2 is stuck at the step that was killed; round 1 finished before.
        assert during["rounds"][0].status.value == "complete"
        assert during["rounds"][1].status.value == {
            "train": "training", "score": "scoring", "select": "selecting",
            "push": "pushing", "sync": "waiting_for_labels",
        }[step]
        assert len(during["leases"]) == 1  # left behind by the killed process

    resumed = run_demo(crashed_dir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = snapshot(crashed_dir)
    assert final["leases"] == []
    for key in ("rounds", "selections", "scores", "annotations"):
        assert final[key] == reference[key], key
    # Exactly one score per pool sample per round, one selection and one annotation per sample.
    assert len({(r, uri) for r, uri, _, _ in final["scores"]}) == len(final["scores"])
    assert len({uri for _, uri, _, _ in final["selections"]}) == len(final["selections"]) == 16
    assert len({uri for uri, _, _ in final["annotations"]}) == len(final["annotations"]) == 16 + 16


LEASE_HOLDER = """
import sys, time
from activelabel.storage import open_engine
from activelabel.storage.lease import acquire
engine = open_engine(sys.argv[1])
acquire(engine, int(sys.argv[2]), "crashy", 1)
print("held", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_a_second_process_gets_already_running_and_changes_nothing(tmp_path):
    from activelabel.campaign import CampaignConfig, prepare_campaign

    url = f"sqlite:///{tmp_path / 'activelabel.db'}"
    engine = open_engine(url)
    campaign_id = prepare_campaign(engine, CampaignConfig(
        name="crashy", strategy="bald", rounds=2, batch_size=8, initial_labeled=16,
        mc_samples=3, epochs=2, fixed_epochs=True,  # DEMO's settings
    ))
    holder = subprocess.Popen([sys.executable, "-c", LEASE_HOLDER, url, str(campaign_id)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        blocked = run_demo(tmp_path)
        assert blocked.returncode == 1
        assert "Traceback" not in blocked.stderr
        message = [line for line in blocked.stderr.splitlines() if line.startswith("error:")]
        assert len(message) == 1, blocked.stderr
        assert f"round 1 of campaign 'crashy' is already running (process {holder.pid}" in message[0]
        with session_scope(engine) as session:
            assert session.scalars(select(Round)).all() == []
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: its lease is taken over at once and the campaign runs.
    time.sleep(0.1)
    assert run_demo(tmp_path).returncode == 0
    assert [r.status.value for r in snapshot(tmp_path)["rounds"]] == ["complete", "complete"]


@pytest.mark.slow
def test_two_demo_processes_at_once_one_proceeds_the_other_is_refused(tmp_path):
    """Two real `activelabel demo` processes on the same campaign; the first stalls mid-round."""
    first_dir = tmp_path
    release = tmp_path / "let-the-first-go-on"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-a"), "ACTIVELABEL_PAUSE_AT": f"train:{release}"}
    with open(tmp_path / "a.out", "w") as out, open(tmp_path / "a.err", "w") as err:
        first = subprocess.Popen([EXE, *DEMO, "--rounds", "1"], cwd=first_dir, env=env,
                                 stdout=out, stderr=err, start_new_session=True)
    try:
        db = first_dir / "activelabel.db"
        deadline = time.monotonic() + 120
        while True:  # wait until the first process holds the lease (mid-round)
            assert time.monotonic() < deadline, (tmp_path / "a.err").read_text()[-2000:]
            if db.exists():
                try:
                    if snapshot(first_dir)["leases"]:
                        break
                except Exception:  # schema not created yet
                    pass
            time.sleep(0.5)
        second = run_demo(first_dir, "--rounds", "1")
        assert second.returncode == 1, second.stderr[-2000:]
        errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "round 1 of campaign 'crashy' is already running" in errors[0]
        assert f"process {first.pid}" in errors[0]
        release.touch()
        assert first.wait(timeout=300) == 0, (tmp_path / "a.err").read_text()[-2000:]
    finally:
        try:
            os.killpg(first.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    final = snapshot(first_dir)
    assert [r.status.value for r in final["rounds"]] == ["complete"]
    assert len(final["selections"]) == 8 and len({s.uri for s in final["selections"]}) == 8
    assert len({(r, uri) for r, uri, _, _ in final["scores"]}) == len(final["scores"])
    assert final["leases"] == []


def _without_prefect_api() -> dict:
    """The environment of a CLI that must start Prefect's temporary API server itself."""
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)  # the suite's shared server (tests/conftest.py) is not used
    return env


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_prefect_temporary_server_ends_with_the_cli_however_it_is_stopped(tmp_path, sig):
    """SIGKILL, SIGTERM or Ctrl-C (SIGINT) of the CLI alone, mid-round: its uvicorn child goes too."""
    env = {**_without_prefect_api(), "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "ACTIVELABEL_PAUSE_AT": f"train:{tmp_path / 'never'}"}
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        cli = subprocess.Popen([EXE, *DEMO, "--rounds", "1"], cwd=tmp_path, env=env,
                               stdout=out, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # the flow runs (lease held) and Prefect's server is up
        while True:
            assert cli.poll() is None, (tmp_path / "err").read_text()[-2000:]
            assert time.monotonic() < deadline, (tmp_path / "err").read_text()[-2000:]
            servers = {p: c for p, c in children(cli.pid).items() if "uvicorn" in c}
            db = tmp_path / "activelabel.db"
            if servers and db.exists():
                try:
                    if snapshot(tmp_path)["leases"]:
                        break
                except Exception:  # schema not created yet
                    pass
            time.sleep(0.5)
        os.kill(cli.pid, sig)  # the CLI alone, not its process group
        # One signal is enough, also when it lands inside a weakref callback where Python drops
        # the handler's exception, ours or Prefect's (activelabel.stop records it).
        code = cli.wait(timeout=180)
        assert code == {signal.SIGKILL: -signal.SIGKILL, signal.SIGTERM: 128 + signal.SIGTERM,
                        signal.SIGINT: 128 + signal.SIGINT}[sig], (tmp_path / "err").read_text()[-2000:]
        assert_none_left(cli.pid)
        assert all(not Path(f"/proc/{pid}").exists() or "Z" in (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0])
                   for pid in servers)
        if sig != signal.SIGKILL:
            stderr = (tmp_path / "err").read_text()
            assert "Traceback" not in stderr
            errors = [line for line in stderr.splitlines() if line.startswith("error:")]
            name = "SIGTERM" if sig == signal.SIGTERM else "Ctrl-C"
            assert errors == [f"error: stopped by {name}; run the same command again to resume"], stderr[-2000:]
    finally:
        try:
            os.killpg(cli.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # Stopped mid-round: the rerun (shared API now) resumes it to the end.
    rerun = run_demo(tmp_path, "--rounds", "1")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert [r.status.value for r in snapshot(tmp_path)["rounds"]] == ["complete"]


def test_prefect_server_too_slow_to_start_is_one_line_saying_what_to_do(tmp_path):
    """Prefect's temporary server gets 1 s; a first start (it creates its database) takes more."""
    env = {"PREFECT_API_URL": None, "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "1"}
    result = run_demo(tmp_path, "--rounds", "1", env=env)  # also: nothing left behind
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith("error: Prefect's temporary API server did not start within 1 s")
    assert "export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=600" in errors[0]
    assert "`prefect server start`" in errors[0] and "export PREFECT_API_URL=" in errors[0]
    # Nothing of the round ran: the campaign exists, no round was started.
    assert snapshot(tmp_path)["rounds"] == []
