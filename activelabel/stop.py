"""A stop request (Ctrl-C, SIGTERM) that cannot be lost.

The CLI's signal handler raises :class:`Stopped` at once, but Python swallows an exception raised
while it runs a weakref callback or ``__del__`` (it prints "Exception ignored in: ..." and goes
on). So the handler first records the signal here, and long work honours a recorded request at
its step boundaries (:func:`raise_if_requested`, called by :mod:`activelabel.progress`); the CLI
also checks :func:`requested` when a command returns normally. A plain module, so the campaign
code can read it without importing the CLI.
"""

from __future__ import annotations

import signal
import sys

_requested: int | None = None  # the last stop signal received; kept for the exit code
_pending = False  # a request not yet raised at a check point


class Stopped(BaseException):
    """The run was asked to stop by ``signum`` (SIGINT or SIGTERM).

    A ``BaseException`` (not ``KeyboardInterrupt``: typer would turn that into "Aborted"), so
    ``except Exception`` in the steps does not swallow it. ``str()`` says it in words ("stopped
    by Ctrl-C"), as stored round errors and the progress line show it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"stopped by {signal_name(self.signum)}"


def signal_name(signum: int) -> str:
    """'SIGTERM' for SIGTERM, 'Ctrl-C' otherwise (SIGINT)."""
    return "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"


def request(signum: int) -> None:
    """Record a stop request (the signal handler calls this before raising :class:`Stopped`)."""
    global _requested, _pending
    _requested = signum
    _pending = True


def requested() -> int | None:
    """The signal of the last stop request, or None if none was made in this process."""
    return _requested


def raise_if_requested() -> None:
    """Raise :class:`Stopped` once for a recorded request whose exception was lost.

    Does nothing while a ``Stopped`` is already being handled (cleanup code on the way out), nor
    twice for one request; the CLI still exits 128 + signum from :func:`requested`."""
    global _pending
    if not _pending or isinstance(sys.exc_info()[1], Stopped):
        return
    _pending = False
    raise Stopped(_requested)


def clear() -> None:
    """Forget any request (tests; a process that serves more than one command)."""
    global _requested, _pending
    _requested = None
    _pending = False
