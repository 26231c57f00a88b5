"""The `activelabel` command as a user runs it: a real subprocess, real exit codes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from activelabel.storage import Round, RoundStatus, Selection, open_engine, session_scope

EXE = shutil.which("activelabel") or str(Path(sys.executable).with_name("activelabel"))


def run_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "200", "PREFECT_HOME": str(cwd / "prefect-home"), **(env or {})}
    return subprocess.run(
        [EXE, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600
    )


def test_help_explains_every_demo_option(tmp_path):
    top = run_cli("--help", cwd=tmp_path)
    assert top.returncode == 0
    for command in ("demo", "strategies"):
        assert command in top.stdout
    demo = run_cli("demo", "--help", cwd=tmp_path)
    assert demo.returncode == 0
    for option in ("--strategy", "--rounds", "--batch-size", "--initial-labeled", "--mc-samples",
                   "--seed", "--database-url"):
        assert option in demo.stdout


def test_strategies_lists_every_registered_strategy(tmp_path):
    from activelabel.acquisition import STRATEGIES

    result = run_cli("strategies", cwd=tmp_path)
    assert result.returncode == 0
    for name, strategy in STRATEGIES.items():
        assert name in result.stdout
    assert "mutual information" in result.stdout


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_unknown_strategy_is_one_line_and_writes_nothing(tmp_path):
    line = one_line_error(run_cli("demo", "--strategy", "bogus", cwd=tmp_path))
    assert "unknown strategy 'bogus'" in line and "bald" in line
    assert not (tmp_path / "activelabel.db").exists()


def test_batch_larger_than_pool_is_one_line_and_writes_nothing(tmp_path):
    line = one_line_error(run_cli("demo", "--batch-size", "5000", cwd=tmp_path))
    assert "batch size 5000 is larger than the unlabeled pool" in line
    assert not (tmp_path / "activelabel.db").exists()


def test_unreachable_database_is_one_line_naming_it_without_password(tmp_path):
    url = "postgresql+psycopg://annotator:topsecretpw@127.0.0.1:1/labels"
    line = one_line_error(run_cli("demo", "--database-url", url, cwd=tmp_path))
    assert "cannot reach database" in line
    assert "127.0.0.1:1/labels" in line
    assert "topsecretpw" not in line


@pytest.mark.parametrize("command", [["status", "nosuch"], ["export", "nosuch", "--to", "x.csv"], ["report", "nosuch"]])
def test_reading_commands_refuse_a_missing_database_and_create_none(tmp_path, command):
    line = one_line_error(run_cli(*command, cwd=tmp_path))
    assert "no database at" in line and "activelabel.db" in line and "--database-url" in line
    assert not (tmp_path / "activelabel.db").exists()  # a typo leaves nothing behind


def test_sqlite_in_missing_folder_is_one_line(tmp_path):
    line = one_line_error(
        run_cli("demo", "--database-url", f"sqlite:///{tmp_path}/missing/dir/al.db", cwd=tmp_path)
    )
    assert "missing/dir/al.db" in line


def test_demo_runs_shows_table_and_a_rerun_continues(tmp_path):
    args = ("demo", "--rounds", "2", "--batch-size", "10", "--initial-labeled", "20",
            "--mc-samples", "4", "--epochs", "3", "--strategy", "entropy")
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Campaign demo-entropy-seed0" in first.stdout
    assert "test accuracy" in first.stdout
    table_rows = [line for line in first.stdout.splitlines() if "complete" in line]
    assert len(table_rows) == 2
    assert "round 2 complete" in first.stderr  # the per-round progress bar's last state
    # --epochs 3 on 20 labels is raised by the 200-step minimum: said once, not per round
    note = ("Rounds on fewer than 2,114 labels train more than epochs = 3: each round takes at least 200 optimizer "
            "steps of 32 samples (on {} labels: {} epochs).")
    assert " ".join(first.stderr.split()).count(note.format(20, 200)) == 1
    assert first.stderr.count("Rounds on fewer than") == 1

    again = run_cli(*args[:2], "3", *args[3:], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert note.format(40, 100) in " ".join(again.stderr.split())  # 2 batches of 32 per epoch
    # Run again with its rounds complete: it says so and how to get more (it printed only the table).
    complete = run_cli(*args[:2], "3", *args[3:], cwd=tmp_path)
    assert complete.returncode == 0, complete.stderr
    assert ("Campaign 'demo-entropy-seed0': 3 of 3 rounds complete, so run has no round to run; for more, raise "
            "`rounds` in the campaign file or pass --rounds N") in " ".join(complete.stderr.split())
    assert len([line for line in complete.stdout.splitlines() if "complete" in line]) == 3
    engine = open_engine(f"sqlite:///{tmp_path / 'activelabel.db'}")
    with session_scope(engine) as session:
        statuses = session.scalars(select(Round.status).order_by(Round.index)).all()
        assert statuses == [RoundStatus.complete] * 3
        assert session.scalar(select(func.count()).select_from(Selection)) == 30

    status = run_cli("status", "demo-entropy-seed0", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    rows = [line.split("│") for line in status.stdout.splitlines() if "complete" in line]
    # round | kind | status | selected | sent | annotated | resolved | rejected | accuracy
    assert [[cell.strip() for cell in row[1:9]] for row in rows] == [
        [str(i), "active", "complete", "10", "10", "10", "10", "0"] for i in (1, 2, 3)
    ]
    listing = run_cli("status", cwd=tmp_path)
    assert "demo-entropy-seed0" in listing.stdout and " 3 " in listing.stdout

    nothing = run_cli("resume", "demo-entropy-seed0", cwd=tmp_path)
    assert nothing.returncode == 0 and "Nothing to resume" in nothing.stderr
    current = run_cli("db", "current", cwd=tmp_path)
    assert current.returncode == 0 and "up to date" in current.stdout

    changed = run_cli(*args[:-1], "entropy", "--batch-size", "7", cwd=tmp_path)
    line = one_line_error(changed)
    assert "already exists with other settings" in line and "batch_size 10 -> 7" in line


def test_run_explains_the_dask_options_and_refuses_a_bad_cluster_before_writing(tmp_path):
    """`run --help` documents --dask-address / --dask-workers; a wrong value is one line naming
    the option and what to write, before any database is created."""
    helped = run_cli("run", "--help", cwd=tmp_path)
    assert helped.returncode == 0
    assert "--dask-address" in helped.stdout and "--dask-workers" in helped.stdout
    assert "tcp://host:8786" in helped.stdout
    for args, expected in ((("--dask-workers", "0"), "--dask-workers must be at least 1"),
                           (("--dask-address", "scheduler:8786"), "write it as tcp://host:8786"),
                           (("--dask-address", "tcp://h:8786", "--dask-workers", "2"), "not both")):
        line = one_line_error(run_cli("run", "--rounds", "1", *args, cwd=tmp_path))
        assert expected in line, line
    assert not (tmp_path / "activelabel.db").exists()
