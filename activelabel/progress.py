"""Progress reporting that long work calls into, and the CLI renders (or nobody does).

A process-wide reporter rather than a parameter: Prefect tasks run the steps, and a Rich
progress object is not a flow parameter.
"""

from __future__ import annotations

from typing import Protocol

from activelabel.stop import raise_if_requested


class ProgressReporter(Protocol):
    def start_round(self, index: int) -> None:
        """A round starts (or resumes): the CLI opens its bar."""

    def phase(self, description: str, total: int) -> None:
        """A new phase of the current round starts, with ``total`` units of work."""

    def advance(self, completed: int) -> None:
        """``completed`` units of the current phase are done (absolute, not a delta)."""

    def finish_round(self, message: str, *, done: bool = True) -> None:
        """The round ended; ``message`` says how (e.g. its test accuracy). ``done`` False: it
        stopped, failed or waits, so its bar stays where the work stopped instead of filling."""


class SilentReporter:
    def start_round(self, index: int) -> None:
        pass

    def phase(self, description: str, total: int) -> None:
        pass

    def advance(self, completed: int) -> None:
        pass

    def finish_round(self, message: str, *, done: bool = True) -> None:
        pass


class _StopCheckpoints:
    """Delegates to a reporter; a round or phase start is also where a stop request whose
    exception Python swallowed (see :mod:`activelabel.stop`) is honoured: cheap, and every
    round passes through it. Not ``advance``/``finish_round``: cleanup code on the way out of a
    stopped round reports through them."""

    def __init__(self, inner: ProgressReporter) -> None:
        self.inner = inner

    def start_round(self, index: int) -> None:
        raise_if_requested()
        self.inner.start_round(index)

    def phase(self, description: str, total: int) -> None:
        raise_if_requested()
        self.inner.phase(description, total)

    def advance(self, completed: int) -> None:
        self.inner.advance(completed)

    def finish_round(self, message: str, *, done: bool = True) -> None:
        self.inner.finish_round(message, done=done)


_reporter: ProgressReporter = _StopCheckpoints(SilentReporter())


def set_reporter(new: ProgressReporter | None) -> None:
    global _reporter
    _reporter = _StopCheckpoints(new if new is not None else SilentReporter())


def reporter() -> ProgressReporter:
    return _reporter
