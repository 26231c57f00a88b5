"""Helpers of the report tests: the tiny experiment's settings and running `activelabel`.

2 strategies × 2 seeds × 2 rounds on digits (batch 5, one epoch, 2 MC samples, a pool subset
of 300): first with --seeds 1 (as if interrupted after the first seed), then with --seeds 2
and two worker processes. The first run's rows are kept to show the second redid nothing.

495 initial labels put the calibration threshold (campaign.calibrate.MIN_LABELS = 500) between
the two rounds: round 1 (495 labels) stores no calibration, round 2 (500) does. Training costs
the same either way (at least 200 optimizer steps per round), so the report shows both cases
at no extra time.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path


COMMON = ["--strategies", "random,entropy", "--rounds", "2", "--batch-size", "5", "--epochs", "1",
          "--mc-samples", "2", "--pool-subset", "300", "--initial-labeled", "495", "--device", "cpu",
          "--experiment", "tiny"]
ROUNDS, BATCH, POOL_SUBSET, INITIAL = 2, 5, 300, 495
STRATEGIES = ("random", "entropy")
SEEDS = (0, 1)


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


class ReportParser(HTMLParser):
    """Figures (data-figure -> img src), their captions, tables (id -> rows of cell texts), every
    <img> src, and the page's text (notes included), one string per text node."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, list[str]] = defaultdict(list)
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.captions: dict[str, str] = {}
        self.texts: list[str] = []
        self._caption: list[str] | None = None
        self._figure: str | None = None
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self._figure = attrs.get("data-figure")
        elif tag == "img":
            self.images.append(attrs["src"])
            if self._figure:
                self.figures[self._figure].append(attrs["src"])
        elif tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "figcaption" and self._figure:
            self._caption = []

    def handle_endtag(self, tag):
        if tag == "figcaption" and self._caption is not None:
            self.captions[self._figure] = "".join(self._caption)
            self._caption = None
        elif tag == "figure":
            self._figure = None
        elif tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        self.texts.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._caption is not None:
            self._caption.append(data)

    @property
    def text(self) -> str:
        return " ".join(self.texts)
