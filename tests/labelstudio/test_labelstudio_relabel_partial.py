"""A sample whose image changed while its Label Studio task was only partly answered
(annotations_per_task = 2, one answer in): handled like a fully answered one.

Without a decision the run stops and names it; ``--relabel-changes`` puts the new (embedded) image
in the same task, clears the answer there and keeps it in the database as rejected history (not a
vote); the two answers given on the new image then resolve the sample. ``--accept-changes`` keeps
the answer (it counts towards the two).
"""

from __future__ import annotations


import pytest
from sqlalchemy import select

from activelabel.campaign import prepare_campaign
from activelabel.campaign.data import campaign_data, clear_cache
from activelabel.campaign.setup import build_annotator
from activelabel.campaign.integrity import DataChangedError
from activelabel.errors import CampaignStateError
from activelabel.flows import campaign_flow, sync_flow
from activelabel.storage import Annotation, AnnotationStatus, Sample, session_scope
from activelabel.storage.repository import resolved_labels
from test_labelstudio_relabel import _campaign, _invert
from tests_support_lsserver import delete_projects_titled
from tests_support_lstasks import answer, tasks_of_round
from tests_support_owndata import LABELS

pytestmark = pytest.mark.labelstudio
RESULT = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [LABELS[1]]}}]


def _second_user(ls_client, tag: str) -> int:
    """Another Label Studio user, so a second answer counts as a second annotator."""
    user = ls_client.users.create(username=f"relabel-partial-{tag}", email=f"relabel-partial-{tag}@example.org")
    return int(user.id)


def _rows(engine, sample_id: int) -> list[tuple[str, AnnotationStatus]]:
    with session_scope(engine) as session:
        return [(a.label, a.status) for a in session.scalars(
            select(Annotation).where(Annotation.sample_id == sample_id).order_by(Annotation.id))]


@pytest.fixture
def partly_answered(ls_server, ls_client, tmp_path, monkeypatch):
    """Evaluation round of 4 sent; every task answered once (1 of 2); one image then inverted."""
    name, config, engine = _campaign(tmp_path, monkeypatch, ls_server,
                                     settings={"annotator.annotations_per_task": 2})
    assert config.annotations_per_task == 2
    try:
        assert campaign_flow(name, 1)[-1].status == "waiting_for_labels"
        sent = tasks_of_round(engine, 1)
        assert len(sent) == 4
        for task_id in sent.values():
            answer(ls_client, task_id, LABELS[0])
        assert sync_flow(name).pending == 4  # one answer of two each
        uri, task_id = sorted(sent.items())[0]
        old_image = ls_client.tasks.get(task_id).data["image"]
        with session_scope(engine) as session:
            sample_id = session.scalar(select(Sample.id).where(Sample.uri == uri))
        _invert(tmp_path / "images" / uri)
        yield name, config, engine, uri, task_id, sample_id, old_image
    finally:
        delete_projects_titled(ls_client, config.labelstudio_project)


def test_a_partly_answered_changed_image_needs_a_decision(partly_answered) -> None:
    name, config, engine, uri, task_id, sample_id, _ = partly_answered
    with pytest.raises(CampaignStateError) as stopped:
        prepare_campaign(engine, config)
    assert str(stopped.value).startswith(
        "1 partly answered image(s) changed since they were answered (the answers in were given on the old image)")
    assert uri in str(stopped.value)
    assert _rows(engine, sample_id) == [(LABELS[0], AnnotationStatus.accepted)]  # nothing withdrawn yet


def test_relabel_shows_the_new_image_and_withdraws_the_partial_answer(partly_answered, ls_client) -> None:
    name, config, engine, uri, task_id, sample_id, old_image = partly_answered
    prepare_campaign(engine, config, relabel_changes=True)
    clear_cache()
    new_image = build_annotator(config, campaign_data(config)).image_source(uri)
    task = ls_client.tasks.get(task_id)
    assert new_image.startswith("data:image/") and new_image != old_image
    assert task.data["image"] == new_image
    assert not task.annotations  # served again as unanswered
    with session_scope(engine) as session:
        rows = list(session.scalars(select(Annotation).where(Annotation.sample_id == sample_id)))
        assert [(a.label, a.status) for a in rows] == [(LABELS[0], AnnotationStatus.rejected)]
        assert "image changed" in rows[0].reason
        campaign_id = rows[0].campaign_id
    assert sync_flow(name).pending == 4  # still out, in the same task; the old answer is no vote

    # Two answers on the new image, by two annotators, resolve it; the withdrawn one never counts.
    other = _second_user(ls_client, str(task_id))
    try:
        answer(ls_client, task_id, LABELS[1])
        ls_client.annotations.create(id=task_id, result=RESULT, completed_by=other)
        assert sync_flow(name).pending == 3
    finally:
        ls_client.users.delete(id=other)
    assert _rows(engine, sample_id) == [(LABELS[0], AnnotationStatus.rejected),
                                        (LABELS[1], AnnotationStatus.accepted), (LABELS[1], AnnotationStatus.accepted)]
    with session_scope(engine) as session:
        assert resolved_labels(session, campaign_id, 2)[sample_id].label == LABELS[1]


def test_accept_keeps_the_partial_answer_as_a_vote(partly_answered, ls_client) -> None:
    name, config, engine, uri, task_id, sample_id, old_image = partly_answered
    prepare_campaign(engine, config, accept_changes=True)
    assert _rows(engine, sample_id) == [(LABELS[0], AnnotationStatus.accepted)]
    assert len(ls_client.tasks.get(task_id).annotations) == 1
    prepare_campaign(engine, config)  # accepted: the new content is the stored one now


def test_a_changed_image_whose_task_has_no_answer_yet_is_shown_anew(ls_server, ls_client, tmp_path, monkeypatch) -> None:
    """Sent, unanswered, then changed: nothing to decide, the task simply gets the new image."""
    name, config, engine = _campaign(tmp_path, monkeypatch, ls_server)
    try:
        assert campaign_flow(name, 1)[-1].status == "waiting_for_labels"
        sent = tasks_of_round(engine, 1)
        uri, task_id = sorted(sent.items())[0]
        old_image = ls_client.tasks.get(task_id).data["image"]
        _invert(tmp_path / "images" / uri)
        prepare_campaign(engine, config)  # no option needed
        clear_cache()
        new_image = build_annotator(config, campaign_data(config)).image_source(uri)
        assert new_image != old_image and ls_client.tasks.get(task_id).data["image"] == new_image
        assert tasks_of_round(engine, 1) == sent  # same task, still out
        answer(ls_client, task_id, LABELS[2])
        assert sync_flow(name).pending == 3
        with session_scope(engine) as session:
            sample_id = session.scalar(select(Sample.id).where(Sample.uri == uri))
        assert _rows(engine, sample_id) == [(LABELS[2], AnnotationStatus.accepted)]
    finally:
        delete_projects_titled(ls_client, config.labelstudio_project)


def test_an_answer_not_synced_yet_stops_the_run_and_nothing_is_deleted(
        ls_server, ls_client, tmp_path, monkeypatch) -> None:
    """Answered in Label Studio after the last sync, then changed: the run must not delete an
    answer the database does not hold. It stops, asks for a sync, and leaves the task as it was;
    once synced, the answer is decided like any other (here: kept with --accept-changes)."""
    name, config, engine = _campaign(tmp_path, monkeypatch, ls_server)
    try:
        assert campaign_flow(name, 1)[-1].status == "waiting_for_labels"
        sent = tasks_of_round(engine, 1)
        uri, task_id = sorted(sent.items())[0]
        old_image = ls_client.tasks.get(task_id).data["image"]
        answer(ls_client, task_id, LABELS[2])  # not synced
        _invert(tmp_path / "images" / uri)
        with pytest.raises(DataChangedError) as stopped:
            prepare_campaign(engine, config)
        message = str(stopped.value)
        assert message.startswith("1 changed image(s) have answers in Label Studio that are not synced yet")
        assert uri in message and f"task {task_id}" in message and f"activelabel sync {name}" in message
        task = ls_client.tasks.get(task_id)
        assert task.data["image"] == old_image and len(task.annotations) == 1  # untouched

        assert sync_flow(name).pending == 3
        with pytest.raises(DataChangedError, match="1 labeled image"):
            prepare_campaign(engine, config)  # now a labeled change: the usual decision
        prepare_campaign(engine, config, accept_changes=True)
        with session_scope(engine) as session:
            sample_id = session.scalar(select(Sample.id).where(Sample.uri == uri))
        assert _rows(engine, sample_id) == [(LABELS[2], AnnotationStatus.accepted)]
    finally:
        delete_projects_titled(ls_client, config.labelstudio_project)
