"""Skips in a real Label Studio are read, stored once and settle a sample (trial 16 F2).

Label Studio's default ``skip_queue`` (REQUEUE_FOR_OTHERS) serves a skipped task only to
annotators who have not seen it, so with one annotator per task (or as many annotators as
answers per task) a skip used to leave the round waiting for ever. Now a skip is stored (status
``skipped``, never a vote), a sample nobody is left to answer is *set aside*, and no round waits
for it; an answer given later still labels it. The "annotators" answer and skip through Label
Studio's API, as the web UI does.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from activelabel.campaign import CampaignConfig, prepare_campaign
from activelabel.campaign.file import load_campaign_file
from activelabel.cli import app
from activelabel.flows import campaign_flow, sync_flow
from activelabel.pipeline.datasets import load_dataset
from activelabel.storage import (
    Annotation,
    AnnotationStatus,
    Round,
    RoundKind,
    RoundStatus,
    Sample,
    Selection,
    open_engine,
    session_scope,
)
from activelabel.storage.models import AnnotationChange, AnnotationChangeKind
from activelabel.campaign.still_out import tasks_still_out
from activelabel.storage.repository import resolved_labels, set_aside_samples, unlabeled_pool

from tests_support_campaignfile import use_label_studio, write_campaign_file
from tests_support_lsserver import delete_projects_titled, project_titled
from tests_support_lstasks import answer as answer_task
from tests_support_lstasks import tasks_of_round
from tests_support_owndata import write_unlabeled_pool

pytestmark = pytest.mark.labelstudio

DIGITS = load_dataset("digits")
TRUTH = {uri: DIGITS.labels[DIGITS.targets[i]] for i, uri in enumerate(DIGITS.uris)}
INITIAL = 12


def _result(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


@pytest.fixture
def digits_campaign(ls_server, ls_client, tmp_path, monkeypatch):
    """A digits campaign in Label Studio with its own database and project (deleted after)."""
    monkeypatch.setenv("LABEL_STUDIO_URL", ls_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_server.api_key)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    url = f"sqlite:///{tmp_path / 'skips.db'}"
    monkeypatch.setenv("ACTIVELABEL_DATABASE_URL", url)
    made = []

    def make(**overrides):
        settings = dict(name=f"skips-{uuid.uuid4().hex[:10]}", annotator="labelstudio", strategy="entropy",
                        rounds=1, batch_size=3, initial_labeled=INITIAL, mc_samples=3, epochs=2, device="cpu")
        settings.update(overrides)
        config = CampaignConfig(**settings)
        engine = open_engine(url)
        prepare_campaign(engine, config)
        made.append(config.labelstudio_project)
        return config, engine, url

    yield make
    delete_projects_titled(ls_client, *made)


def _tasks(ls_client, title: str) -> list:
    project = project_titled(ls_client, title)
    return sorted(ls_client.tasks.list(project=project.id, fields="all"), key=lambda t: t.id)


def _uris(engine) -> dict[int, str]:
    with session_scope(engine) as session:
        return dict(session.execute(select(Sample.id, Sample.uri)).all())


def _rows(engine) -> list[tuple]:
    with session_scope(engine) as session:
        return sorted(session.execute(
            select(Annotation.sample_id, Annotation.annotator, Annotation.label, Annotation.status,
                   Annotation.external_id, Annotation.reason).where(Annotation.source == "labelstudio")
        ).all(), key=lambda r: r[4])


def test_one_annotator_a_skip_sets_the_sample_aside_and_the_round_completes(digits_campaign, ls_client):
    config, engine, url = digits_campaign()
    assert campaign_flow(config.name, 1)[0].status == "waiting_for_labels"
    tasks = _tasks(ls_client, config.labelstudio_project)
    uris = _uris(engine)
    for task in tasks[:2]:
        ls_client.annotations.create(id=task.id, result=_result(TRUTH[uris[task.data["sample_id"]]]))
    skipped_task = tasks[2]
    skip = ls_client.annotations.create(id=skipped_task.id, result=[], was_cancelled=True)
    me = ls_client.users.whoami().email

    # One sync completes the round (default min_new_labels: all, less the set-aside sample).
    synced = CliRunner().invoke(app, ["sync", config.name], terminal_width=400)
    assert synced.exit_code == 0, synced.output
    line = " ".join(synced.output.split())
    assert line.startswith("2 new answers, 1 skip, 0 edited, 0 deleted in Label Studio; 0 samples of the current "
                           "round still wait for labels; 1 sample set aside by skips, not waited for"), line
    with session_scope(engine) as session:
        assert session.scalar(select(Round.status)) == RoundStatus.complete
        campaign_id = session.scalar(select(Round.campaign_id))
        resolved = resolved_labels(session, campaign_id)
        aside = set_aside_samples(session, campaign_id)
    skip_rows = [r for r in _rows(engine) if r[3] == AnnotationStatus.skipped]
    assert skip_rows == [(skipped_task.data["sample_id"], me, "", AnnotationStatus.skipped, str(skip.id),
                          "skipped in Label Studio")]
    # The resolved labels are the 2 answers (and the seed labels): a skip is no vote.
    answered = {t.data["sample_id"] for t in tasks[:2]}
    assert {s for s in resolved if s in {t.data["sample_id"] for t in tasks}} == answered
    assert len(resolved) == INITIAL + 2
    assert aside == {skipped_task.data["sample_id"]: [me]}
    # Set aside, it never returns to the pool, and its task stays out (a late answer still counts).
    with session_scope(engine) as session:
        assert skipped_task.data["sample_id"] not in {s.id for s in unlabeled_pool(session, campaign_id)}
    assert [t.sample_id for t in tasks_still_out(engine, campaign_id, 1)] == [skipped_task.data["sample_id"]]

    # A second sync changes nothing.
    before = _rows(engine)
    again = sync_flow(config.name)
    assert (again.new_labels, again.skipped, again.edited, again.deleted) == (0, 0, 0, 0)
    assert _rows(engine) == before

    # status names the skipped sample and who skipped it; the table counts it as no answer.
    status = CliRunner().invoke(app, ["status", config.name], terminal_width=400)
    assert status.exit_code == 0, status.output
    text = " ".join(status.output.split())
    assert (f"1 sample set aside (skipped, and no annotator left to answer): sample "
            f"{skipped_task.data['sample_id']} (round 1, task {skipped_task.id}) skipped by {me}; answer it in "
            "Label Studio's Data Manager to label it after all; it is not offered again by activelabel.") in text
    row = next(r for r in status.output.splitlines() if r.strip().startswith("│") and "complete" in r)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[3:8] == ["3", "3", "2", "2", "0"]  # selected, sent, annotated, resolved, rejected


def test_two_annotators_a_skip_then_turned_into_an_answer_resolves_with_history(digits_campaign, ls_client):
    config, engine, _ = digits_campaign(annotations_per_task=2, batch_size=2)
    assert campaign_flow(config.name, 1)[0].status == "waiting_for_labels"
    second = ls_client.users.create(
        username=f"skip-{uuid.uuid4().hex[:6]}", email=f"skip-{uuid.uuid4().hex[:6]}@example.com",
        password="annotator-pw-123",
    )
    tasks = _tasks(ls_client, config.labelstudio_project)
    uris = _uris(engine)
    truth = {t.id: TRUTH[uris[t.data["sample_id"]]] for t in tasks}
    kept, skipped = tasks
    for task in tasks:  # A (the admin) answers both
        ls_client.annotations.create(id=task.id, result=_result(truth[task.id]))
    ls_client.annotations.create(id=kept.id, result=_result(truth[kept.id]), completed_by=second.id)
    skip = ls_client.annotations.create(id=skipped.id, result=[], was_cancelled=True, completed_by=second.id)

    first = sync_flow(config.name)
    # A answered, B skipped: nobody is left, the sample is set aside and the round completes on
    # the other one (min(2, 2 - 1) = 1 needed).
    assert (first.new_labels, first.skipped, first.pending, first.set_aside) == (3, 1, 0, 1)
    with session_scope(engine) as session:
        assert session.scalar(select(Round.status)) == RoundStatus.complete
        campaign_id = session.scalar(select(Round.campaign_id))
        assert set_aside_samples(session, campaign_id, 2) == {skipped.data["sample_id"]: [second.email]}
        assert skipped.data["sample_id"] not in resolved_labels(session, campaign_id, 2)

    # B turns the skip into an answer: same annotation, now with a result.
    ls_client.annotations.update(id=skip.id, result=_result(truth[skipped.id]), was_cancelled=False)
    later = sync_flow(config.name)
    assert (later.new_labels, later.skipped, later.edited) == (0, 0, 1)
    with session_scope(engine) as session:
        label = resolved_labels(session, campaign_id, 2)[skipped.data["sample_id"]]
        assert (label.label, label.votes) == (truth[skipped.id], 2)
        assert set_aside_samples(session, campaign_id, 2) == {}
        row = session.scalar(select(Annotation).where(Annotation.external_id == str(skip.id)))
        assert (row.status, row.label, row.annotator) == (AnnotationStatus.accepted, truth[skipped.id], second.email)
        history = session.execute(
            select(AnnotationChange.kind, AnnotationChange.old_status, AnnotationChange.old_label,
                   AnnotationChange.new_status, AnnotationChange.new_label, AnnotationChange.annotator)
            .where(AnnotationChange.external_id == str(skip.id))).all()
    assert history == [(AnnotationChangeKind.edited, AnnotationStatus.skipped, "", AnnotationStatus.accepted,
                        truth[skipped.id], second.email)]


def test_an_evaluation_round_with_a_skip_completes_once_the_rest_is_labeled(ls_server, ls_client, tmp_path,
                                                                          monkeypatch):
    db_url = use_label_studio(monkeypatch, ls_server, tmp_path)
    truth = write_unlabeled_pool(tmp_path / "images", count=20)
    name = f"evalskip-{uuid.uuid4().hex[:8]}"
    path = write_campaign_file(tmp_path / "campaign.toml", name, settings={
        "campaign.batch_size": 4, "data.evaluation_size": 4, "campaign.epochs": 2, "campaign.mc_samples": 3,
        "campaign.device": "cpu"})
    config, _ = load_campaign_file(path)
    engine = open_engine(db_url)
    prepare_campaign(engine, config)
    try:
        assert campaign_flow(name, 1)[-1].status == "waiting_for_labels"
        with session_scope(engine) as session:
            assert session.scalar(select(Round.kind)) == RoundKind.evaluation
        sent = sorted(tasks_of_round(engine, 1).items())
        (skipped_uri, skipped_task), rest = sent[0], sent[1:]
        ls_client.annotations.create(id=skipped_task, result=[], was_cancelled=True)
        answer_task(ls_client, rest[0][1], truth[rest[0][0]])
        # 1 of the 3 samples not set aside labeled: the evaluation round waits for the other 2.
        waiting = sync_flow(name)
        assert (waiting.skipped, waiting.set_aside, waiting.pending) == (1, 1, 2)
        with session_scope(engine) as session:
            assert session.scalar(select(Round.status)) == RoundStatus.waiting_for_labels
        for uri, task_id in rest[1:]:
            answer_task(ls_client, task_id, truth[uri])
        done = sync_flow(name)
        assert (done.new_labels, done.pending, done.set_aside) == (2, 0, 1)
        with session_scope(engine) as session:
            assert session.scalar(select(Round.status)) == RoundStatus.complete
            campaign_id = session.scalar(select(Round.campaign_id))
            skipped_id = session.scalar(select(Sample.id).where(Sample.uri == skipped_uri))
            assert skipped_id in set_aside_samples(session, campaign_id)
            assert session.scalar(select(func.count()).select_from(Selection)
                                  .where(Selection.sample_id == skipped_id)) == 1
    finally:
        delete_projects_titled(ls_client, config.labelstudio_project)
