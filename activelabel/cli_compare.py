"""The `compare` command's console side: one progress bar over every arm, and a final table.

The bar reads complete rounds from the database every second instead of listening to the
steps: arms may run in other processes, where this process's reporter cannot hear them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


class ExperimentProgress:
    """A Rich bar of complete rounds over all arms, refreshed from ``count()`` by a thread."""

    def __init__(self, console: Console, description: str, total: int, count: Callable[[], int]) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=False,
        )
        self._count = count
        self._task = self._progress.add_task(description, total=max(total, 1), completed=min(count(), total))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            self._refresh()

    def _refresh(self) -> None:
        try:
            self._progress.update(self._task, completed=self._count())
        except Exception:  # a busy database must not end the run; the next poll tries again
            pass

    def __enter__(self) -> ExperimentProgress:
        self._progress.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._refresh()
        self._progress.stop()


def final_table(title: str, rows: list[tuple[str, int, int | None, float | None, float | None]]) -> Table:
    """rows: (strategy, seeds, labels, mean accuracy, std accuracy) at each arm's last round."""
    table = Table(title=title)
    for column in ("strategy", "seeds", "labels", "test accuracy (mean ± std)"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for strategy, seeds, labels, mean, std in rows:
        accuracy = "" if mean is None else f"{mean:.3f} ± {std or 0.0:.3f}"
        table.add_row(strategy, str(seeds), "" if labels is None else str(labels), accuracy)
    return table
