"""A stop request (Ctrl-C, SIGTERM) is never lost, and reads in words.

Python swallows an exception raised while it runs a weakref callback or ``__del__`` ("Exception
ignored in: ..."): a Ctrl-C whose handler ran there used to let the run go on and exit 0. A real
Ctrl-C from outside cannot be timed to land in such a callback, so these tests deliver the signal
from inside one (``signal.raise_signal`` in a weakref callback: the handler then runs in that
callback, deterministically), or record the request as the handler does. The same with Prefect's
SIGTERM handler active in a real flow: tests/flows/test_flows_stop.py.
"""

from __future__ import annotations

import gc
import signal
import sys
import weakref

import pytest

from activelabel import cli, progress, stop
from activelabel.stop import Stopped


@pytest.fixture(autouse=True)
def _clean_stop_state():
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    hook = sys.unraisablehook  # cli.main() installs stop's
    stop.clear()
    yield
    stop.clear()
    progress.set_reporter(None)
    for s, handler in handlers.items():
        signal.signal(s, handler)
    sys.unraisablehook = hook


def test_stopped_reads_in_words():
    assert str(Stopped(signal.SIGINT)) == "stopped by Ctrl-C"
    assert str(Stopped(signal.SIGTERM)) == "stopped by SIGTERM"
    assert f"failed: {Stopped(signal.SIGINT)}" == "failed: stopped by Ctrl-C"


class _Target:
    pass


def _signal_inside_weakref_callback(signum: int) -> list[str]:
    """Deliver ``signum`` to this process from inside a weakref callback; return what ran after."""
    after = []
    target = _Target()
    ref = weakref.ref(target, lambda _ref: signal.raise_signal(signum))
    del target  # the callback runs here; the handler's exception is swallowed by Python
    gc.collect()
    after.append("the command went on")
    assert ref() is None
    return after


def _error_inside_weakref_callback() -> None:
    target = _Target()
    ref = weakref.ref(target, lambda _ref: int("not a number"))  # a bug, not a stop
    del target
    assert ref() is None


@pytest.mark.parametrize("signum, code, name", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_stop_swallowed_in_a_weakref_callback_still_exits_with_the_signal(monkeypatch, capsys, signum, code, name):
    ran, printed = [], []
    # The hook in place before the CLI starts (Python's prints "Exception ignored in: ...").
    monkeypatch.setattr("sys.unraisablehook", lambda unraisable: printed.append(unraisable.exc_value))

    def command():
        ran.extend(_signal_inside_weakref_callback(signum))
        _error_inside_weakref_callback()

    monkeypatch.setattr(cli, "app", command)
    monkeypatch.setattr("activelabel.memory.steady_allocator", lambda: None)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    err = capsys.readouterr().err
    assert ran == ["the command went on"]  # the exception really was swallowed ...
    assert exited.value.code == code  # ... yet the command exits as stopped, not 0
    assert f"stopped by {name}; run the same command again to resume" in err
    # The swallowed stop is recorded, not printed as ignored; other swallowed errors still are.
    assert stop.requested() == signum
    assert [type(e) for e in printed] == [ValueError]


def test_install_records_swallowed_stops_of_any_handler_and_restore_puts_everything_back(monkeypatch):
    from prefect.exceptions import TerminationSignal

    def prefect_like(signum, _frame):  # what Prefect's handler does while a flow runs
        raise TerminationSignal(signal=signum)

    printed = []
    monkeypatch.setattr("sys.unraisablehook", lambda unraisable: printed.append(unraisable.exc_value))
    before = signal.getsignal(signal.SIGTERM)
    restore = stop.install()
    assert signal.getsignal(signal.SIGINT) is signal.getsignal(signal.SIGTERM) is stop.handle_signal
    signal.signal(signal.SIGTERM, prefect_like)
    assert _signal_inside_weakref_callback(signal.SIGTERM) == ["the command went on"]
    assert printed == [] and stop.requested() == signal.SIGTERM
    with pytest.raises(Stopped) as stopped:
        progress.reporter().phase("the next step", 1)
    assert stopped.value.signum == signal.SIGTERM
    restore()
    assert signal.getsignal(signal.SIGTERM) is before
    _error_inside_weakref_callback()
    assert [type(e) for e in printed] == [ValueError]  # the hook before install is back


def test_prefects_termination_signal_reads_as_a_stop_and_is_not_raised_again_while_handled():
    from prefect.exceptions import TerminationSignal

    assert stop.stop_signal(TerminationSignal(signal=signal.SIGTERM)) == signal.SIGTERM
    assert stop.stop_signal(Stopped(signal.SIGINT)) == signal.SIGINT
    assert stop.stop_signal(KeyboardInterrupt()) == signal.SIGINT
    assert stop.stop_signal(ValueError("x")) is None and stop.stop_signal(None) is None
    assert stop.note(ValueError("x")) is None and stop.requested() is None
    try:
        raise TerminationSignal(signal=signal.SIGTERM)  # Prefect's, propagating normally
    except TerminationSignal as error:
        assert stop.note(error) == signal.SIGTERM  # what the round flow does with it
        stop.raise_if_requested()  # cleanup on the way out: no second raise
    with pytest.raises(Stopped):
        stop.raise_if_requested()


def test_stop_swallowed_when_the_command_ends_with_exit_0(monkeypatch, capsys):
    def command():
        stop.request(signal.SIGINT)  # as the handler does before its exception is lost
        raise SystemExit(0)  # typer's standalone mode ends a command this way

    monkeypatch.setattr(cli, "app", command)
    monkeypatch.setattr("activelabel.memory.steady_allocator", lambda: None)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 130
    assert "stopped by Ctrl-C; run the same command again to resume" in capsys.readouterr().err


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start_round(self, index):
        self.calls.append(("start_round", index))

    def phase(self, description, total):
        self.calls.append(("phase", description))

    def advance(self, completed):
        self.calls.append(("advance", completed))

    def finish_round(self, message, *, done=True):
        self.calls.append(("finish_round", message))


def test_the_run_loop_honours_a_recorded_stop_at_its_next_step_boundary():
    recorder = _Recorder()
    progress.set_reporter(recorder)
    progress.reporter().phase("scoring", 10)
    stop.request(signal.SIGINT)  # the handler ran; its exception never reached the loop
    progress.reporter().advance(5)  # mid-phase: no check point
    with pytest.raises(Stopped) as stopped:
        progress.reporter().phase("training", 3)  # the next step boundary stops
    assert stopped.value.signum == signal.SIGINT
    # Cleanup reports on the way out still go through, and the request is raised once only.
    progress.reporter().finish_round(f"failed: {stopped.value}")
    progress.reporter().start_round(7)
    assert recorder.calls == [("phase", "scoring"), ("advance", 5), ("finish_round", "failed: stopped by Ctrl-C"),
                              ("start_round", 7)]
    assert stop.requested() == signal.SIGINT  # kept for the exit code


def test_no_second_raise_while_a_stop_is_being_handled():
    stop.request(signal.SIGTERM)
    try:
        raise Stopped(signal.SIGTERM)  # the handler's exception, propagating normally
    except Stopped:
        stop.raise_if_requested()  # cleanup code at a check point: does not raise again
    with pytest.raises(Stopped):
        stop.raise_if_requested()  # but a later step boundary does (one pending request)


def test_an_error_raised_while_prefect_handles_a_termination_is_still_a_stop(monkeypatch, capsys):
    """CI: SIGTERM landed while Prefect started a task run; its crash handler raised
    ``ValueError: Task run is not set`` while handling the TerminationSignal, and the CLI exited 1
    with a traceback. The stop is in the exception's chain: exit 143, one line."""
    from prefect.exceptions import TerminationSignal

    def command():
        try:
            raise TerminationSignal(signal=signal.SIGTERM)
        except TerminationSignal:
            raise ValueError("Task run is not set")  # noqa: B904 - as Prefect's handle_crash does

    assert stop.stop_signal_in_chain(ValueError("x")) is None
    monkeypatch.setattr(cli, "app", command)
    monkeypatch.setattr("activelabel.memory.steady_allocator", lambda: None)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 143
    assert "stopped by SIGTERM; run the same command again to resume" in capsys.readouterr().err
