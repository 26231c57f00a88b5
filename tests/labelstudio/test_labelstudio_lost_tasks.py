"""Tasks still out that Label Studio lost (project deleted, server reset, a task deleted) are
pushed again by the next sync, with a warning, and the round goes on; nothing is written twice."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select

from activelabel.annotation.labelstudio import LabelStudioError
from activelabel.campaign import steps
from activelabel.pipeline.datasets import load_dataset
from activelabel.storage import Annotation, Round, RoundStatus, Sample, Selection, session_scope

from tests_support_lsserver import delete_project, project_titled
from tests_support_rounds import run_round

pytestmark = pytest.mark.labelstudio

DIGITS = load_dataset("digits")
TRUTH = {uri: DIGITS.labels[DIGITS.targets[i]] for i, uri in enumerate(DIGITS.uris)}
LOST = "lost_tasks"


def choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


@pytest.fixture
def campaign(ls_campaign):
    def make():
        return ls_campaign("lost", strategy="entropy", rounds=2, batch_size=4, initial_labeled=12,
                           mc_samples=2, epochs=1)

    return make


def tasks_of(ls_client, project_id: int) -> list:
    return sorted(ls_client.tasks.list(project=project_id, fields="all"), key=lambda t: t.id)


def task_ids(engine, campaign_id: int) -> dict[int, str]:
    """sample id -> stored task id, one row per selection (a duplicate would raise)."""
    with session_scope(engine) as session:
        rows = session.execute(select(Selection.sample_id, Selection.external_task_id)
                               .where(Selection.campaign_id == campaign_id)).all()
    ids = dict(rows)
    assert len(ids) == len(rows)
    return ids


def answer(ls_client, engine, tasks) -> None:
    with session_scope(engine) as session:
        uri = dict(session.execute(select(Sample.id, Sample.uri)).all())
    for task in tasks:
        ls_client.annotations.create(id=task.id, result=choice(TRUTH[uri[task.data["sample_id"]]]))


def annotation_rows(engine, campaign_id: int) -> list[tuple[int, str]]:
    with session_scope(engine) as session:
        return sorted(session.execute(select(Annotation.sample_id, Annotation.external_id)
                                      .where(Annotation.campaign_id == campaign_id,
                                             ~Annotation.external_id.like("seed-%"))).all())


def lost_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and r.name.endswith(LOST)]


def test_a_deleted_project_gets_the_tasks_still_out_again_and_the_round_completes(
        campaign, ls_client, ls_server, caplog):
    config, engine, campaign_id = campaign()
    round_id = run_round(engine, campaign_id, sync=False)
    old = project_titled(ls_client, config.labelstudio_project)
    first, *rest = tasks_of(ls_client, old.id)
    answer(ls_client, engine, [first])
    assert steps.sync_campaign(engine, campaign_id).new_labels == 1
    before = task_ids(engine, campaign_id)
    delete_project(ls_client, old.id)

    caplog.set_level(logging.INFO)
    result = steps.sync_campaign(engine, campaign_id)
    assert (result.new_labels, result.deleted, result.pending) == (0, 0, 3)
    new = project_titled(ls_client, config.labelstudio_project)
    assert new.id != old.id
    again = tasks_of(ls_client, new.id)
    assert sorted(t.data["sample_id"] for t in again) == sorted(t.data["sample_id"] for t in rest)
    # The answered sample keeps its old task id; the others point at their new tasks.
    after = task_ids(engine, campaign_id)
    assert after == {**before, **{t.data["sample_id"]: str(t.id) for t in again}}
    [warning] = lost_warnings(caplog)
    for part in (config.name, config.labelstudio_project, f"id {new.id}", "3 tasks still out",
                 "3 of round 1", "deleted or Label Studio reset", "created because none",
                 "never synced cannot come back"):
        assert part in warning, (part, warning)
    assert ls_server.api_key not in caplog.text

    # A rerun changes nothing: no task imported, no id moved, no warning.
    caplog.clear()
    result = steps.sync_campaign(engine, campaign_id)
    assert (result.new_labels, result.deleted, result.pending) == (0, 0, 3)
    assert [t.id for t in tasks_of(ls_client, new.id)] == [t.id for t in again]
    assert task_ids(engine, campaign_id) == after
    assert lost_warnings(caplog) == []

    # Answered in the new project, the round completes; nothing is stored twice.
    answer(ls_client, engine, again)
    result = steps.sync_campaign(engine, campaign_id)
    assert (result.new_labels, result.pending) == (3, 0)
    with session_scope(engine) as session:
        assert session.get(Round, round_id).status == RoundStatus.complete
        assert session.scalar(select(func.count()).select_from(Selection)
                              .where(Selection.campaign_id == campaign_id)) == 4
    rows = annotation_rows(engine, campaign_id)
    assert len(rows) == 4 and len({sample for sample, _ in rows}) == 4
    assert steps.sync_campaign(engine, campaign_id).new_labels == 0
    assert annotation_rows(engine, campaign_id) == rows


def test_a_single_deleted_task_is_pushed_again_and_the_others_are_untouched(campaign, ls_client, caplog):
    config, engine, campaign_id = campaign()
    run_round(engine, campaign_id, sync=False)
    project = project_titled(ls_client, config.labelstudio_project)
    gone, *kept = tasks_of(ls_client, project.id)
    before = task_ids(engine, campaign_id)
    ls_client.tasks.delete(id=gone.id)

    caplog.set_level(logging.INFO)
    assert steps.sync_campaign(engine, campaign_id).pending == 4
    now = tasks_of(ls_client, project.id)
    assert project_titled(ls_client, config.labelstudio_project).id == project.id
    assert [(t.id, t.data, len(t.predictions)) for t in now[:3]] == [(t.id, t.data, len(t.predictions)) for t in kept]
    [back] = now[3:]
    assert back.data["sample_id"] == gone.data["sample_id"] and len(back.predictions) == 1
    assert task_ids(engine, campaign_id) == {**before, gone.data["sample_id"]: str(back.id)}
    [warning] = lost_warnings(caplog)
    assert "1 tasks still out" in warning and "1 of round 1" in warning and f"id {project.id}" in warning
    assert "created because none" not in warning

    caplog.clear()
    steps.sync_campaign(engine, campaign_id)
    assert [t.id for t in tasks_of(ls_client, project.id)] == [t.id for t in now]
    assert lost_warnings(caplog) == []


def test_a_round_failed_on_a_lost_task_continues_on_resume(campaign, ls_client):
    """The state the 404 left before this fix: the round failed at step waiting for labels."""
    config, engine, campaign_id = campaign()
    round_id = run_round(engine, campaign_id, sync=False)
    delete_project(ls_client, project_titled(ls_client, config.labelstudio_project).id)
    steps.mark_failed(engine, round_id, LabelStudioError(
        "Label Studio at http://127.0.0.1 refused syncing round 1: reading task 1 (HTTP 404)"))
    with session_scope(engine) as session:
        assert session.get(Round, round_id).failed_step == RoundStatus.waiting_for_labels

    assert run_round(engine, campaign_id) == round_id  # what `activelabel resume` runs
    with session_scope(engine) as session:
        rnd = session.get(Round, round_id)
        assert (rnd.status, rnd.error) == (RoundStatus.waiting_for_labels, None)
    again = tasks_of(ls_client, project_titled(ls_client, config.labelstudio_project).id)
    assert len(again) == 4
    answer(ls_client, engine, again)
    run_round(engine, campaign_id)
    with session_scope(engine) as session:
        assert session.get(Round, round_id).status == RoundStatus.complete
