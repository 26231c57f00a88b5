"""A create Label Studio did but answered with a 5xx is not done twice.

Label Studio on SQLite under load answers a project create 500 ("database is locked" in
``ProjectSummary.reset``) after it wrote the project; the SDK used to resend the POST, and one
create made two projects (CI proxy of 9e93623: three projects with one title).

Every request here goes to the real server. What cannot be had from it on demand is the failed
answer itself: a transport between the SDK and the server replaces the real answer to the chosen
requests with a 500 after the server has done them (or, with ``forward=False``, before it sees
them). That fault is injected and nothing else.
"""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from tests_support_lsserver import projects_titled

pytestmark = pytest.mark.labelstudio


class AnswersFailAfterDoing(httpx.BaseTransport):
    """Forward every request to the real server, but answer the first ``times`` requests matching
    ``method`` and ``path`` (a regular expression) with a 500: after the server did them
    (``forward=True``) or without sending them (``forward=False``)."""

    def __init__(self, method: str, path: str, *, times: int = 1, forward: bool = True) -> None:
        self.real = httpx.HTTPTransport()
        self.method, self.path, self.left, self.forward = method, re.compile(path), times, forward
        self.failed: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        hit = self.left > 0 and request.method == self.method and self.path.search(request.url.path)
        if not hit:
            return self.real.handle_request(request)
        self.left -= 1
        self.failed.append(request.url.path)
        if self.forward:
            self.real.handle_request(request).close()
        return httpx.Response(500, json={"detail": "database is locked"}, request=request)


def with_faults(annotator, ls_server, transport: AnswersFailAfterDoing):
    """The annotator's SDK client, through ``transport``, with the SDK's default retries."""
    from label_studio_sdk import LabelStudio

    annotator._ls = LabelStudio(base_url=ls_server.url, api_key=ls_server.api_key,
                                httpx_client=httpx.Client(transport=transport, timeout=30))
    return annotator


def test_a_project_create_answered_500_after_it_was_made_makes_one_project(
        make_annotator, ls_server, ls_client, project_title, caplog):
    transport = AnswersFailAfterDoing("POST", r"/api/projects/?$")
    annotator = with_faults(make_annotator(), ls_server, transport)
    with caplog.at_level(logging.WARNING):
        project_id = annotator.ensure_project()
    assert transport.failed == ["/api/projects/"]
    assert [p.id for p in projects_titled(ls_client, project_title)] == [project_id]
    assert "it was done all the same, so it is used and not sent again" in caplog.text
    assert "HTTP 500" in caplog.text and "creating project" in caplog.text
    assert annotator.created_project


def test_a_project_create_that_failed_before_the_server_saw_it_is_sent_again(
        make_annotator, ls_server, ls_client, project_title, caplog):
    transport = AnswersFailAfterDoing("POST", r"/api/projects/?$", forward=False)
    annotator = with_faults(make_annotator(), ls_server, transport)
    with caplog.at_level(logging.WARNING):
        project_id = annotator.ensure_project()
    assert len(transport.failed) == 1
    assert [p.id for p in projects_titled(ls_client, project_title)] == [project_id]
    assert "it was not done: trying again in 1 s (try 2 of 3)" in caplog.text


def test_a_task_import_answered_500_after_it_was_done_imports_each_sample_once(
        make_annotator, ls_server, ls_client, make_tasks, caplog):
    annotator = make_annotator()
    project_id = annotator.ensure_project()
    transport = AnswersFailAfterDoing("POST", rf"/api/projects/{project_id}/import")
    with_faults(annotator, ls_server, transport)
    tasks = make_tasks([0.2, 0.5, 0.9])
    with caplog.at_level(logging.WARNING):
        pushed = annotator.push(tasks)
    assert len(transport.failed) == 1
    stored = list(ls_client.tasks.list(project=project_id, fields="all"))
    assert sorted(t.data["sample_id"] for t in stored) == [100, 101, 102]
    assert pushed == {t.data["sample_id"]: str(t.id) for t in stored}
    # each task keeps its one prediction: Label Studio had imported them with the tasks
    assert all([p.model_version for p in t.predictions] == ["r1-test"] for t in stored)
    assert "it was done all the same" in caplog.text
    assert annotator.push(tasks) == pushed  # and a second push imports nothing


def test_a_prediction_answered_500_after_it_was_stored_is_stored_once(
        make_annotator, ls_server, ls_client, make_tasks):
    annotator = make_annotator()
    tasks = make_tasks([0.3, 0.6])
    first = annotator.push(tasks, model_version="r1-test")
    transport = AnswersFailAfterDoing("POST", r"/api/predictions/?$", times=2)
    with_faults(annotator, ls_server, transport)
    assert annotator.push(tasks, model_version="r2-test") == first
    assert len(transport.failed) == 2  # both tasks' r2 predictions were answered 500
    for task in ls_client.tasks.list(project=annotator.project_id, fields="all"):
        assert sorted(p.model_version for p in task.predictions) == ["r1-test", "r2-test"]
