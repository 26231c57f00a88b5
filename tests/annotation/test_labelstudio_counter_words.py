"""The detached-signals warning: its verb agrees with the count (trial 15 F16: "1 task hold"), it
says the count is of the tasks this sync read (trial 16 F1: counts jumped 3, 12, 15, 11 from sync
to sync while 90 tasks were affected), and a process says it once per project (a watch repeated
it at every sync). The rows are task JSON as Label Studio lists it (``fields=all``); the real
server's detached-signals state is covered in tests/labelstudio/test_labelstudio_lost_signals.py."""

from __future__ import annotations

import logging

from activelabel.annotation import labelstudio
from activelabel.annotation.labelstudio import _warn_if_counters_stopped


def _task(counted: int) -> dict:
    return {"id": 1, "total_annotations": counted, "annotations": [{"id": 9, "was_cancelled": False}]}


def test_the_warning_agrees_with_the_count(caplog, monkeypatch) -> None:
    monkeypatch.setattr(labelstudio, "_COUNTERS_SAID", set())
    with caplog.at_level(logging.WARNING, logger="activelabel.annotation.labelstudio"):
        _warn_if_counters_stopped("http://ls", 202, [_task(0), _task(1)])
        _warn_if_counters_stopped("http://ls", 203, [_task(0), _task(0), _task(0)])
        _warn_if_counters_stopped("http://ls", 204, [_task(0)])
    starts = [r.getMessage().split(" (total_annotations")[0] for r in caplog.records]
    assert starts == [
        "Label Studio http://ls: project 202: 1 of the 2 tasks this sync read holds annotations that Label Studio "
        "does not count",
        "Label Studio http://ls: project 203: 3 of the 3 tasks this sync read hold annotations that Label Studio "
        "does not count",
        "Label Studio http://ls: project 204: 1 of the 1 task this sync read holds annotations that Label Studio "
        "does not count",
    ]
    assert all(r.getMessage().endswith("(said once per project while this command runs).") for r in caplog.records)


def test_a_process_says_it_once_per_project(caplog, monkeypatch) -> None:
    monkeypatch.setattr(labelstudio, "_COUNTERS_SAID", set())
    with caplog.at_level(logging.DEBUG, logger="activelabel.annotation.labelstudio"):
        _warn_if_counters_stopped("http://ls", 301, [_task(1)])  # nothing uncounted: nothing said
        for stale in (3, 12, 15, 11):
            _warn_if_counters_stopped("http://ls", 301, [_task(0)] * stale)
        _warn_if_counters_stopped("http://ls", 302, [_task(0)])  # another project: its own line
    warnings = [r.getMessage().split(" annotations")[0] for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["Label Studio http://ls: project 301: 3 of the 3 tasks this sync read hold",
                        "Label Studio http://ls: project 302: 1 of the 1 task this sync read holds"]
    later = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and "uncounted" in r.getMessage()]
    assert later == [f"Label Studio http://ls: project 301: {n} of the tasks this sync read hold uncounted annotations"
                     for n in (12, 15, 11)]
