"""The tiny experiment of the report tests, run once per session (see report_tiny)."""

from __future__ import annotations

import sqlite3

import pytest
from report_tiny import COMMON, ROUND_ROWS, TinyExperiment, run_cli


@pytest.fixture(scope="session")
def tiny_experiment(tmp_path_factory) -> TinyExperiment:
    folder = tmp_path_factory.mktemp("tiny-experiment")
    database = folder / "experiment.db"
    url = f"sqlite:///{database}"
    first = run_cli("compare", *COMMON, "--seeds", "1", "--database-url", url, cwd=folder)
    assert first.returncode == 0, first.stderr
    with sqlite3.connect(database) as connection:
        first_rounds = connection.execute(ROUND_ROWS).fetchall()
    second = run_cli("compare", *COMMON, "--seeds", "2", "--workers", "2", "--database-url", url, cwd=folder)
    assert second.returncode == 0, second.stderr
    return TinyExperiment(folder, database, url, first_rounds, second.stdout, second.stderr)
