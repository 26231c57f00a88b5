"""A stop request (Ctrl-C, SIGTERM) that cannot be lost.

The CLI's signal handler raises :class:`Stopped` at once, but Python swallows an exception raised
while it runs a weakref callback, ``__del__`` or a garbage-collector callback: it hands it to
:data:`sys.unraisablehook` (which prints "Exception ignored in: ...") and goes on. A signal handler
runs in the main thread at its next bytecode boundary, wherever that is: inside a weakref
callback when a deallocation or the garbage collector has just started one, which depends on
allocation timing (an unrelated change to what a process imports made it happen in every CI
run of a test). And while a Prefect flow runs, SIGTERM goes
to Prefect's own handler (``capture_sigterm`` in ``prefect.utilities.engine``), which raises
``TerminationSignal`` and calls the previous handler (ours) only if that exception reaches the
end of the flow.

So a stop is recorded here on every path: by our handler before it raises; by :func:`install`'s
unraisable hook, which sees every swallowed ``Stopped``, ``TerminationSignal`` or
``KeyboardInterrupt`` (and prints nothing for it: the stop is not ignored); and by the flows when
Prefect's exception reaches them (:func:`note`). Long work honours a recorded request at its step
boundaries (:func:`raise_if_requested`, called by :mod:`activelabel.progress`); the CLI also
checks :func:`requested` when a command returns normally. A plain module (Prefect's exception is
recognised only if Prefect is already imported), so the campaign code can read it without
importing the CLI or Prefect.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_requested: int | None = None  # the last stop signal received; kept for the exit code
_pending = False  # a request not yet raised at a check point
#: Work a stop may cut, by key (a round id): how to record it as cut by a signal. See :func:`hold`.
_in_hand: dict[object, Callable[[int], bool]] = {}
#: What a stop left, said after "stopped by Ctrl-C" when it cut nothing (see :func:`note_left`).
_left: str | None = None


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


def stop_signal(error: BaseException | None) -> int | None:
    """The stop signal ``error`` stands for, or None if it is no stop.

    :class:`Stopped` (our handler), Prefect's ``TerminationSignal`` (its SIGTERM handler while a
    flow runs; recognised only when ``prefect.exceptions`` is already imported) and
    ``KeyboardInterrupt`` (Python's default SIGINT handler) are stops."""
    if isinstance(error, Stopped):
        return error.signum
    if isinstance(error, KeyboardInterrupt):
        return int(signal.SIGINT)
    termination = getattr(sys.modules.get("prefect.exceptions"), "TerminationSignal", None)
    if termination is not None and isinstance(error, termination):
        return int(getattr(error, "signal", signal.SIGTERM))
    return None


def stop_signal_in_chain(error: BaseException | None, depth: int = 10) -> int | None:
    """The stop signal of ``error`` or of an exception it was raised while handling (its
    ``__cause__`` / ``__context__``, up to ``depth`` links), or None.

    Why: a signal that lands while Prefect starts a task run makes Prefect's crash handler raise
    its own error (``ValueError: Task run is not set``) while it handles the ``TerminationSignal``;
    the stop is then only in the chain, and without this the user got exit 1 and a traceback."""
    for _ in range(depth):
        if error is None:
            return None
        signum = stop_signal(error)
        if signum is not None:
            return signum
        error = error.__cause__ or error.__context__
    return None


def request(signum: int) -> None:
    """Record a stop request (the signal handler calls this before raising :class:`Stopped`)."""
    global _requested, _pending
    _requested = signum
    _pending = True


def note(error: BaseException | None) -> int | None:
    """Record ``error`` as a stop request if it is one (see :func:`stop_signal`); its signal or None.

    For code that sees a stop exception that did not come from our handler (Prefect's
    ``TerminationSignal``) and may not reach the CLI: the request then survives it."""
    signum = stop_signal(error)
    if signum is not None:
        request(signum)
    return signum


def requested() -> int | None:
    """The signal of the last stop request, or None if none was made in this process."""
    return _requested


def raise_if_requested() -> None:
    """Raise :class:`Stopped` once for a recorded request whose exception was lost.

    Does nothing while a stop (``Stopped``, Prefect's ``TerminationSignal``) is already being
    handled (cleanup code on the way out), nor twice for one request; the CLI still exits
    128 + signum from :func:`requested`."""
    global _pending
    if not _pending or stop_signal(sys.exc_info()[1]) is not None:
        return
    _pending = False
    raise Stopped(_requested)


def clear() -> None:
    """Forget any request (tests; a process that serves more than one command)."""
    global _requested, _pending, _left
    _requested = None
    _pending = False
    _left = None


def note_left(words: str | None) -> None:
    """Record what a stop left when it cut nothing, in words that follow "stopped by Ctrl-C"
    (e.g. "after round 5 was pushed: it waits for labels; ..."): the CLI's last line then says
    that instead of the resume hint (trial 15, F6: a Ctrl-C just after a round was pushed read
    "round 5 failed"). None forgets it."""
    global _left
    _left = words


def left() -> str | None:
    """What :func:`note_left` recorded, or None."""
    return _left


def hold(key: object, record_cut: Callable[[int], bool]) -> None:
    """Note work in hand (a round started) until :func:`release`; ``record_cut(signum)`` stores it
    as cut by that stop and returns whether the store took it.

    The round flow records a stop itself on its way out; the CLI also calls
    :func:`record_cut_work` as it exits on a stop, the last chance for a stop the flow could not
    record (its database busy at that moment, or the stop reaching the process where the flow's
    ``except`` did not run)."""
    _in_hand[key] = record_cut


def release(key: object) -> None:
    """The work's outcome is stored (done, failed, or recorded as cut): forget it."""
    _in_hand.pop(key, None)


def holds_work() -> bool:
    """Whether some work in hand is not recorded yet (see :func:`hold`)."""
    return bool(_in_hand)


def record_cut_work(signum: int) -> None:
    """Record every piece of work still held as cut by ``signum`` (the CLI, exiting on a stop)."""
    for key, record_cut in list(_in_hand.items()):
        if record_cut(signum):
            release(key)


def handle_signal(signum: int, _frame: FrameType | None) -> None:
    """The SIGINT/SIGTERM handler: record the request, then raise :class:`Stopped`.

    Raises:
        Stopped: always (Python may swallow it: see the module docstring; the record stays).
    """
    request(signum)
    raise Stopped(signum)


def _on_unraisable(unraisable: Any) -> None:
    """:data:`sys.unraisablehook`: a swallowed stop is recorded, anything else goes on as before."""
    signum = note(unraisable.exc_value)
    if signum is None:
        _previous_unraisablehook(unraisable)
        return
    log.debug("%s arrived inside %r, where Python cannot raise it; stopping at the next step",
              signal_name(signum), unraisable.object)


_previous_unraisablehook: Callable[[Any], None] = sys.__unraisablehook__


def record_swallowed_stops() -> None:
    """Only the unraisable hook of :func:`install`, not its signal handlers: for a compare worker
    process, which leaves Ctrl-C to its parent and is ended by the parent's SIGTERM. Prefect's
    SIGTERM handler can raise inside a weakref callback there, and Python's default hook printed
    that as "Exception ignored ... Traceback" under the parent's clean stop line."""
    global _previous_unraisablehook
    if sys.unraisablehook is not _on_unraisable:
        _previous_unraisablehook = sys.unraisablehook
        sys.unraisablehook = _on_unraisable


def install() -> Callable[[], None]:
    """Handle SIGINT and SIGTERM with :func:`handle_signal` and record swallowed stops.

    Call from the main thread (Python runs signal handlers there only). Returns a function that
    puts back the previous signal handlers and unraisable hook (tests; a long-lived process that
    hands the signals back). Prefect replaces the SIGTERM handler while a flow runs and puts this
    one back after; its exception is recorded as a stop here and in :func:`note`.
    """
    global _previous_unraisablehook
    previous_handlers = {s: signal.signal(s, handle_signal) for s in STOP_SIGNALS}
    previous_hook = sys.unraisablehook
    if previous_hook is not _on_unraisable:
        _previous_unraisablehook = previous_hook
        sys.unraisablehook = _on_unraisable

    def restore() -> None:
        global _previous_unraisablehook
        for s, handler in previous_handlers.items():
            signal.signal(s, handler)
        if previous_hook is not _on_unraisable:
            sys.unraisablehook = previous_hook
            _previous_unraisablehook = sys.__unraisablehook__

    return restore
