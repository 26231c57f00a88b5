"""Helpers of the report tests: the tiny experiment's settings and running `activelabel`.

2 strategies × 2 seeds × 2 rounds on digits (batch 5, one epoch, 2 MC samples, a pool subset
of 300): first with --seeds 1 (as if interrupted after the first seed), then with --seeds 2
and two worker processes. The first run's rows are kept to show the second redid nothing.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


COMMON = ["--strategies", "random,entropy", "--rounds", "2", "--batch-size", "5", "--epochs", "1",
          "--mc-samples", "2", "--pool-subset", "300", "--device", "cpu", "--experiment", "tiny"]
ROUNDS, BATCH, POOL_SUBSET = 2, 5, 300


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "activelabel.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


@dataclass
class TinyExperiment:
    folder: Path
    database: Path
    url: str
    first_rounds: list[tuple]  # (round id, campaign name, index, started_at, finished_at) after --seeds 1
    second_stdout: str
    second_stderr: str

    def query(self, sql: str, *params) -> list[tuple]:
        with sqlite3.connect(self.database) as connection:
            return connection.execute(sql, params).fetchall()


ROUND_ROWS = ("SELECT r.id, c.name, r.\"index\", r.started_at, r.finished_at FROM round r "
              "JOIN campaign c ON c.id = r.campaign_id ORDER BY r.id")
