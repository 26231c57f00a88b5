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
        "--initial-labeled", "16", "--mc-samples", "3", "--epochs", "2", "--strategy", "bald")


def run_demo(folder: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PREFECT_HOME": str(folder / "prefect-home"), **(env or {})}
    # Files, not pipes: a SIGKILLed CLI leaves Prefect's temporary API server running, and it
    # would hold a pipe open. The whole process group is ended afterwards.
    with open(folder / "stdout.txt", "w+") as out, open(folder / "stderr.txt", "w+") as err:
        process = subprocess.Popen(
            [EXE, *DEMO, *extra], cwd=folder, env=full_env, stdout=out, stderr=err,
            text=True, start_new_session=True,
        )
        try:
            process.wait(timeout=600)
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
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
        mc_samples=3, epochs=2,
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
