"""Label Studio is the source of truth: edits, deletions and late answers there reach the
database at the next sync, with history, and only changed tasks are read again."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from sqlalchemy import select

from activelabel.campaign import steps
from activelabel.campaign.summary import round_progress
from activelabel.pipeline.datasets import load_dataset
from activelabel.storage import Round, RoundStatus, Sample, session_scope
from activelabel.storage.models import AnnotationChangeKind
from activelabel.storage.repository import annotation_changes, get_sync_cursor, resolved_labels

from tests_support_lsserver import project_titled
from tests_support_rounds import run_round

pytestmark = pytest.mark.labelstudio

DIGITS = load_dataset("digits")
TRUTH = {uri: DIGITS.labels[DIGITS.targets[i]] for i, uri in enumerate(DIGITS.uris)}


def choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


@pytest.fixture
def campaign(ls_campaign):
    def make(**overrides):
        settings = dict(strategy="entropy", rounds=3, batch_size=4, initial_labeled=12, mc_samples=2, epochs=1)
        return ls_campaign("lse", **{**settings, **overrides})

    return make


def project_tasks(ls_client, title: str) -> list:
    project = project_titled(ls_client, title)
    return sorted(ls_client.tasks.list(project=project.id, fields="all"), key=lambda t: t.id)


def test_edits_deletions_and_late_answers_in_label_studio_follow_into_the_database(campaign, ls_client):
    config, engine, campaign_id = campaign()
    round_id = run_round(engine, campaign_id, sync=False)
    with session_scope(engine) as session:
        uri = dict(session.execute(select(Sample.id, Sample.uri)).all())
    edited, deleted, late, kept = project_tasks(ls_client, config.labelstudio_project)
    truth = {t.id: TRUTH[uri[t.data["sample_id"]]] for t in (edited, deleted, late, kept)}
    wrong = str((int(truth[edited.id]) + 1) % 10)
    first = ls_client.annotations.create(id=edited.id, result=choice(wrong))
    gone = ls_client.annotations.create(id=deleted.id, result=choice(truth[deleted.id]))
    for task in (late, kept):
        ls_client.annotations.create(id=task.id, result=choice(truth[task.id]))

    result = steps.sync_campaign(engine, campaign_id)
    assert (result.new_labels, result.edited, result.deleted, result.pending) == (4, 0, 0, 0)
    with session_scope(engine) as session:
        rnd = session.get(Round, round_id)
        assert rnd.status == RoundStatus.complete
        record = (rnd.labeled_count, rnd.test_accuracy, rnd.model_version)
        labels = resolved_labels(session, campaign_id)
        assert labels[edited.data["sample_id"]].label == wrong

    # The annotators change their minds in Label Studio after the round completed.
    ls_client.annotations.update(id=first.id, result=choice(truth[edited.id]))
    ls_client.annotations.delete(id=gone.id)
    other = "0" if truth[late.id] != "0" else "1"
    # A second person answers late (one annotator answering twice would be one vote: their latest).
    tag = uuid.uuid4().hex[:6]
    second = ls_client.users.create(username=f"late-{tag}", email=f"late-{tag}@example.com",
                                    password="annotator-pw-123")
    ls_client.annotations.create(id=late.id, result=choice(other), completed_by=second.id)

    result = steps.sync_campaign(engine, campaign_id)
    assert (result.new_labels, result.edited, result.deleted) == (1, 1, 1)
    with session_scope(engine) as session:
        labels = resolved_labels(session, campaign_id)
        assert labels[edited.data["sample_id"]].label == truth[edited.id]
        assert deleted.data["sample_id"] not in labels  # its only vote is gone
        assert labels[late.data["sample_id"]].votes == 2  # the late answer counts
        assert labels[late.data["sample_id"]].label == truth[late.id]  # 1-1 tie: first answer
        history = annotation_changes(session, campaign_id)
        assert sorted((h.kind, h.sample_id, h.old_label, h.new_label) for h in history) == sorted([
            (AnnotationChangeKind.edited, edited.data["sample_id"], wrong, truth[edited.id]),
            (AnnotationChangeKind.deleted, deleted.data["sample_id"], truth[deleted.id], None),
        ])
        edit = next(h for h in history if h.kind == AnnotationChangeKind.edited)
        assert edit.new_updated_at > edit.old_updated_at
        # The finished round's record stays as it was.
        rnd = session.get(Round, round_id)
        assert rnd.status == RoundStatus.complete
        assert (rnd.labeled_count, rnd.test_accuracy, rnd.model_version) == record
    [progress] = round_progress(engine, config.name)
    assert (progress.resolved, progress.changed) == (3, 2)
    status = subprocess.run(
        [sys.executable, "-m", "activelabel.cli", "status", config.name, "--database-url", str(engine.url)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
    )
    assert status.returncode == 0, status.stderr
    header = next(line for line in status.stdout.splitlines() if "changed" in line)
    row = next(line for line in status.stdout.splitlines() if "complete" in line)
    columns = [c.strip() for c in header.split("┃")]
    cells = [c.strip() for c in row.split("│")]
    assert (cells[columns.index("resolved")], cells[columns.index("changed")]) == ("3", "2")

    # Nothing changed since: a sync changes nothing and writes no history.
    again = steps.sync_campaign(engine, campaign_id)
    assert (again.new_labels, again.edited, again.deleted) == (0, 0, 0)
    with session_scope(engine) as session:
        assert len(annotation_changes(session, campaign_id)) == 2

    # The next round trains on the current labels: 12 seeds + 3 resolved.
    round_2 = steps.start_round(engine, campaign_id)
    steps.train_step(engine, round_2)
    with session_scope(engine) as session:
        assert session.get(Round, round_2).labeled_count == 15


def test_changed_since_reads_only_tasks_changed_after_the_cursor(make_annotator, make_tasks, ls_client, monkeypatch):
    from activelabel.annotation import labelstudio

    monkeypatch.setattr(labelstudio, "CURSOR_OVERLAP", labelstudio.timedelta(0))
    annotator = make_annotator()
    ids = annotator.push(make_tasks([0.5, 0.6, 0.7]))
    t1, t2, t3 = (int(ids[s]) for s in sorted(ids))
    a2 = ls_client.annotations.create(id=t2, result=choice("dog"))
    time.sleep(0.05)
    a1 = ls_client.annotations.create(id=t1, result=choice("cat"))

    first = annotator.changed_since(None)
    # The first sync reads every task (Label Studio's counters cannot be trusted to find the annotated
    # ones: test_labelstudio_lost_signals.py); 102 has no answer.
    assert first.sample_ids == {100, 101, 102} and first.tasks_read == 3
    assert {(a.sample_id, a.label, a.external_id) for a in first.answers} == {
        (100, "cat", str(a1.id)), (101, "dog", str(a2.id))}
    assert set(first.updated_at) == {str(a1.id), str(a2.id)}

    time.sleep(0.05)
    ls_client.annotations.update(id=a1.id, result=choice("bird"))
    second = annotator.changed_since(first.cursor)
    assert second.tasks_read == 1 and second.sample_ids == {100}
    assert [(a.label, a.external_id) for a in second.answers] == [("bird", str(a1.id))]
    assert second.cursor > first.cursor

    time.sleep(0.05)
    ls_client.annotations.delete(id=a2.id)
    third = annotator.changed_since(second.cursor)
    assert 101 in third.sample_ids and not [a for a in third.answers if a.sample_id == 101]
    assert 102 not in third.sample_ids and t3


def test_a_crash_during_sync_loses_no_change_and_writes_none_twice(campaign, ls_client, monkeypatch):
    from activelabel.campaign import sync

    config, engine, campaign_id = campaign(batch_size=2, min_new_labels=1)
    run_round(engine, campaign_id, sync=False)
    first, second = project_tasks(ls_client, config.labelstudio_project)
    one = ls_client.annotations.create(id=first.id, result=choice("1"))
    ls_client.annotations.create(id=second.id, result=choice("2"))

    def crash(step: str, round_index: int) -> None:
        if step == "sync":  # read from Label Studio, died before the database write
            raise SystemExit("crashed mid-sync")

    with monkeypatch.context() as patch:
        patch.setattr(sync, "crash_point", crash)
        with pytest.raises(SystemExit):
            steps.sync_campaign(engine, campaign_id)
    with session_scope(engine) as session:
        assert get_sync_cursor(session, campaign_id, "labelstudio") is None
    assert steps.sync_campaign(engine, campaign_id).new_labels == 2

    ls_client.annotations.update(id=one.id, result=choice("7"))
    with monkeypatch.context() as patch:
        patch.setattr(sync, "crash_point", crash)
        with pytest.raises(SystemExit):
            steps.sync_campaign(engine, campaign_id)
    with session_scope(engine) as session:
        assert resolved_labels(session, campaign_id)[first.data["sample_id"]].label == "1"
    assert steps.sync_campaign(engine, campaign_id).edited == 1
    assert steps.sync_campaign(engine, campaign_id).edited == 0
    with session_scope(engine) as session:
        assert resolved_labels(session, campaign_id)[first.data["sample_id"]].label == "7"
        assert [(h.old_label, h.new_label) for h in annotation_changes(session, campaign_id)] == [("1", "7")]
