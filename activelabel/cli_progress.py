"""Rich progress bars, one per round, fed by the steps through ``activelabel.progress``."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class RichRoundProgress:
    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichRoundProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def start_round(self, index: int) -> None:
        self._task = self._progress.add_task(f"round {index}", total=1)

    def phase(self, description: str, total: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, description=description, total=max(total, 1), completed=0)

    def advance(self, completed: int) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=completed)

    def finish_round(self, message: str, *, done: bool = True) -> None:
        if self._task is not None:
            task = self._progress.tasks[self._task]
            # A stopped, failed or waiting round keeps its bar where the work stopped (trial 11, F9).
            self._progress.update(self._task, description=message, completed=task.total if done else task.completed)
            self._task = None
