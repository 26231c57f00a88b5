"""Progress reporting that long work calls into, and the CLI renders (or nobody does).

A process-wide reporter rather than a parameter: Prefect tasks run the steps, and a Rich
progress object is not a flow parameter.
"""

from __future__ import annotations

from typing import Protocol


class ProgressReporter(Protocol):
    def start_round(self, index: int) -> None:
        """A round starts (or resumes): the CLI opens its bar."""

    def phase(self, description: str, total: int) -> None:
        """A new phase of the current round starts, with ``total`` units of work."""

    def advance(self, completed: int) -> None:
        """``completed`` units of the current phase are done (absolute, not a delta)."""

    def finish_round(self, message: str) -> None:
        """The round ended; ``message`` says how (e.g. its test accuracy)."""


class SilentReporter:
    def start_round(self, index: int) -> None:
        pass

    def phase(self, description: str, total: int) -> None:
        pass

    def advance(self, completed: int) -> None:
        pass

    def finish_round(self, message: str) -> None:
        pass


_reporter: ProgressReporter = SilentReporter()


def set_reporter(new: ProgressReporter | None) -> None:
    global _reporter
    _reporter = new if new is not None else SilentReporter()


def reporter() -> ProgressReporter:
    return _reporter
