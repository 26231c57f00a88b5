"""A compare stopped by Ctrl-C mid-way, with two worker processes, then run again.

The real CLI in its own process group, as a terminal runs it; SIGINT goes to the whole group,
as a terminal's Ctrl-C does, once the database shows a complete round. The stop ends with the
CLI's own line and no Prefect run line after it (trial 17 F3: four "Crash detected!" lines of
the worker processes followed it). The rerun finishes every campaign; the campaigns finished
before the stop are not touched (same round rows, same finish times) and no round or
selection is stored twice.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

ROUNDS, BATCH = 4, 5
COMMAND = ["compare", "--dataset", "digits", "--strategies", "random,entropy", "--seeds", "2",
           "--rounds", str(ROUNDS), "--batch-size", str(BATCH), "--epochs", "1", "--mc-samples", "2",
           "--pool-subset", "200", "--workers", "2", "--device", "cpu", "--experiment", "intr"]
FIRST_ROUND_BOUND_S = 900  # two worker processes import torch and Prefect first, on a loaded machine
STOP_BOUND_S = 300
RERUN_BOUND_S = 900


def _rounds(db) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(
            'SELECT c.name, r.id, r."index", r.status, r.finished_at FROM round r JOIN campaign c '
            'ON c.id = r.campaign_id ORDER BY c.name, r."index"').fetchall()


def _complete(rows) -> set[str]:
    done: dict[str, int] = {}
    for name, _, _, status, _ in rows:
        done[name] = done.get(name, 0) + (status == "complete")
    return {name for name, count in done.items() if count == ROUNDS}


@pytest.mark.prefect_server
@pytest.mark.slow
def _start(tmp_path, prefect_api_url: str, name: str):
    """(the compare CLI in its own process group, its database, its log, its command, its
    environment), started with COMMAND on a fresh database ``name``.db."""
    db = tmp_path / f"{name}.db"
    env = {**os.environ, "PREFECT_API_URL": prefect_api_url, "COLUMNS": "200",
           "PREFECT_HOME": str(tmp_path / "prefect-client")}
    env.pop("ACTIVELABEL_DATABASE_URL", None)
    args = [sys.executable, "-m", "activelabel.cli", *COMMAND, "--database-url", f"sqlite:///{db}"]
    log = tmp_path / f"{name}.log"
    with log.open("w") as out:
        cli = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    return cli, db, log, args, env


def test_ctrl_c_ends_with_our_line_and_the_rerun_finishes_without_redoing_anything(tmp_path, prefect_api_url):
    first, db, log, args, env = _start(tmp_path, prefect_api_url, "intr")
    try:
        deadline = time.monotonic() + FIRST_ROUND_BOUND_S
        while not (db.exists() and any(r[3] == "complete" for r in _safe_rounds(db))):
            assert first.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no complete round within {FIRST_ROUND_BOUND_S} s"
            time.sleep(0.5)
        os.killpg(first.pid, signal.SIGINT)
        assert first.wait(timeout=STOP_BOUND_S) == 130, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    text = log.read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    stop = [n for n, line in enumerate(lines) if line.startswith("error: stopped by Ctrl-C")]
    assert stop, text[-3000:]
    after = lines[stop[0] + 1:]
    assert not [line for line in after if "Crash detected" in line or "Task run" in line or "Flow run" in line], text
    assert "Traceback" not in text, text[-3000:]

    before = _rounds(db)
    finished_before = _complete(before)
    assert len(finished_before) < 4, "every campaign finished before the stop landed: nothing to resume"
    rerun = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RERUN_BOUND_S)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"{len(finished_before)} campaign" in rerun.stderr.split("already finished")[0].splitlines()[-1]
    after_rows = _rounds(db)
    names = {f"intr-{s}-seed{seed}" for s in ("random", "entropy") for seed in (0, 1)}
    assert _complete(after_rows) == names
    for name in names:
        rows = [r for r in after_rows if r[0] == name]
        assert [r[2] for r in rows] == list(range(1, ROUNDS + 1)), rows  # each round once
    for row in before:  # finished campaigns untouched: the same rows, the same finish times
        if row[0] in finished_before:
            assert row in after_rows
    with sqlite3.connect(db) as connection:
        per_campaign = connection.execute(
            "SELECT c.name, count(s.id), count(DISTINCT s.sample_id) FROM selection s JOIN campaign c "
            "ON c.id = s.campaign_id GROUP BY c.name").fetchall()
    assert sorted(per_campaign) == sorted((name, ROUNDS * BATCH, ROUNDS * BATCH) for name in names)


def _safe_rounds(db) -> list[tuple]:
    """The rounds, or none while the database is being created or migrated (locked)."""
    try:
        return _rounds(db)
    except sqlite3.Error:
        return []


def _children(pid: int) -> list[int]:
    """The direct child processes of ``pid`` (Linux /proc)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return found


@pytest.mark.prefect_server
@pytest.mark.slow
def test_ctrl_c_while_the_worker_processes_start_is_our_line_alone(tmp_path, prefect_api_url):
    """Trial 18 F19: a Ctrl-C landing while the two worker processes were still importing printed a
    40-line KeyboardInterrupt traceback through the pool's result thread. Workers now leave Ctrl-C
    to the parent, which ends them (compare._workers_ignore_ctrl_c): the CLI's one line, exit 130. (The
    SIGINT goes as soon as the pool's processes exist; on a loaded machine a round may finish first.)"""
    cli, db, log, _, _ = _start(tmp_path, prefect_api_url, "start")
    try:
        deadline = time.monotonic() + FIRST_ROUND_BOUND_S
        while len(_children(cli.pid)) < 2:  # the pool's processes (and its resource tracker) exist
            assert cli.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no worker processes within {FIRST_ROUND_BOUND_S} s"
            time.sleep(0.1)
        os.killpg(cli.pid, signal.SIGINT)
        assert cli.wait(timeout=STOP_BOUND_S) == 130, log.read_text()[-3000:]
    finally:
        if cli.poll() is None:
            os.killpg(cli.pid, signal.SIGKILL)
            cli.wait()
    text = log.read_text()
    assert "error: stopped by Ctrl-C" in text and "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
