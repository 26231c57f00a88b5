"""Trial 15 F16: the detached-signals warning said "1 task hold annotations". The verb agrees
with the count now. The rows are task JSON as Label Studio lists it (``fields=all``); the real
server's detached-signals state is covered in tests/labelstudio/test_labelstudio_lost_signals.py."""

from __future__ import annotations

import logging

from activelabel.annotation.labelstudio import _warn_if_counters_stopped


def _task(counted: int) -> dict:
    return {"id": 1, "total_annotations": counted, "annotations": [{"id": 9, "was_cancelled": False}]}


def test_the_warning_agrees_with_the_count(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="activelabel.annotation.labelstudio"):
        _warn_if_counters_stopped("http://ls", 202, [_task(0), _task(1)])
        _warn_if_counters_stopped("http://ls", 203, [_task(0), _task(0)])
    starts = [r.getMessage().split(" (total_annotations")[0] for r in caplog.records]
    assert starts == [
        "Label Studio http://ls: project 202: 1 task holds annotations that Label Studio does not count",
        "Label Studio http://ls: project 203: 2 tasks hold annotations that Label Studio does not count",
    ]


def test_a_process_says_it_once_per_project_until_the_count_changes(caplog) -> None:
    # a watch syncs every few seconds: the five-line warning came at every sync (trial 15 F16)
    with caplog.at_level(logging.WARNING, logger="activelabel.annotation.labelstudio"):
        for _ in range(3):
            _warn_if_counters_stopped("http://ls", 301, [_task(0), _task(1)])
        _warn_if_counters_stopped("http://ls", 302, [_task(0)])  # another project: its own line
        _warn_if_counters_stopped("http://ls", 301, [_task(0), _task(0)])  # one more: said again
        _warn_if_counters_stopped("http://ls", 301, [_task(1), _task(1)])  # mended: nothing to say
        _warn_if_counters_stopped("http://ls", 301, [_task(0), _task(1)])  # stopped again: said again
    said = [r.getMessage().split(" annotations")[0] for r in caplog.records]
    assert said == [
        "Label Studio http://ls: project 301: 1 task holds",
        "Label Studio http://ls: project 302: 1 task holds",
        "Label Studio http://ls: project 301: 2 tasks hold",
        "Label Studio http://ls: project 301: 1 task holds",
    ]
