"""Pushes that reach one real Label Studio at the same time each keep their predictions.

Label Studio 1.23 on SQLite sometimes stores a concurrent import's tasks without their
predictions while answering 201 with every task id; the project then refused the round's model
version (stop 20's CI failure: ``Model version doesn't exist either as live model or as static
predictions``). Four threads, each with its own project, push eight times at once: on the code
before the fix about one push in seven failed so. No fault is injected: the server shows it.
"""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest

from activelabel.annotation.labelstudio import LabelStudioAnnotator, png_data_uri

from tests_support_lsserver import delete_project

pytestmark = pytest.mark.labelstudio

THREADS = 4
PUSHES = 8
LABELS = ["cat", "dog", "bird"]  # the labels of conftest's task requests


def test_concurrent_pushes_leave_every_task_with_its_prediction_and_the_model_version_set(ls_server, ls_client, make_tasks):
    annotators = [
        LabelStudioAnnotator(
            ls_server.url, ls_server.api_key, project_title=f"t-concurrent-push-{n}-{uuid.uuid4().hex[:8]}",
            labels=LABELS, image_source=lambda uri: png_data_uri(np.full((1, 4, 4), 0.5)),
            model_version="r1-concurrent",
        )
        for n in range(THREADS)
    ]
    errors: list[str] = []

    def push_all(annotator: LabelStudioAnnotator) -> None:
        try:
            for push in range(PUSHES):
                annotator.push(make_tasks([0.3, 0.6], first_id=100 + 2 * push))
        except Exception as error:  # collected: an assertion in a thread would be lost
            errors.append(f"{annotator.project_title}: {error}")

    threads = [threading.Thread(target=push_all, args=(a,)) for a in annotators]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=600)  # generous: 32 small pushes on a busy machine
        assert not any(t.is_alive() for t in threads), "pushes still running after 600 s"
        assert errors == []
        for annotator in annotators:
            tasks = list(ls_client.tasks.list(project=annotator.project_id, fields="all"))
            assert sorted(t.data["sample_id"] for t in tasks) == list(range(100, 100 + 2 * PUSHES))
            for task in tasks:
                assert [p.model_version for p in task.predictions] == ["r1-concurrent"], task.data["sample_id"]
            assert ls_client.projects.get(id=annotator.project_id).model_version == "r1-concurrent"
    finally:
        for annotator in annotators:
            if annotator._project_id is not None:
                delete_project(ls_client, annotator._project_id)
