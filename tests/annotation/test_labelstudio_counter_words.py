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
