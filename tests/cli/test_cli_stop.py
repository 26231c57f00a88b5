"""A stop request (Ctrl-C, SIGTERM) is never lost, and reads in words.

Python swallows an exception raised while it runs a weakref callback or ``__del__`` ("Exception
ignored in: ..."): a Ctrl-C whose handler ran there used to let the run go on and exit 0. A real
Ctrl-C from outside cannot be timed to land in such a callback, so these tests deliver the signal
from inside one (``signal.raise_signal`` in a weakref callback: the handler then runs in that
callback, deterministically), or record the request as the handler does.
"""

from __future__ import annotations

import gc
import signal
import weakref

import pytest

from activelabel import cli, progress, stop
from activelabel.stop import Stopped


@pytest.fixture(autouse=True)
def _clean_stop_state():
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    stop.clear()
    yield
    stop.clear()
    progress.set_reporter(None)
    for s, handler in handlers.items():
        signal.signal(s, handler)


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


@pytest.mark.parametrize("signum, code, name", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_stop_swallowed_in_a_weakref_callback_still_exits_with_the_signal(monkeypatch, capsys, signum, code, name):
    ran, swallowed = [], []
    monkeypatch.setattr("sys.unraisablehook", lambda unraisable: swallowed.append(unraisable.exc_value))
    monkeypatch.setattr(cli, "app", lambda: ran.extend(_signal_inside_weakref_callback(signum)))
    monkeypatch.setattr("activelabel.memory.steady_allocator", lambda: None)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    err = capsys.readouterr().err
    assert ran == ["the command went on"]  # the exception really was swallowed ...
    assert [type(e) for e in swallowed] == [Stopped] and swallowed[0].signum == signum
    assert exited.value.code == code  # ... yet the command exits as stopped, not 0
    assert f"stopped by {name}; run the same command again to resume" in err


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

    def finish_round(self, message):
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
