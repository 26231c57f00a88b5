"""Whole campaigns labeled through a real Label Studio: push, annotate as people would, sync.

The "annotators" are test helpers answering through Label Studio's API (as the web UI does).
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from activelabel.campaign import CampaignConfig, prepare_campaign
from activelabel.campaign import lookup, steps
from activelabel.flows import campaign_flow, sync_flow
from activelabel.pipeline.datasets import load_dataset
from activelabel.storage import (
    Annotation,
    AnnotationStatus,
    Round,
    RoundStatus,
    Sample,
    Selection,
    open_engine,
    session_scope,
)
from activelabel.storage.repository import resolved_labels

from tests_support_lsserver import delete_projects_titled, project_titled, projects_titled

pytestmark = pytest.mark.labelstudio

DIGITS = load_dataset("digits")
TRUTH = {uri: DIGITS.labels[DIGITS.targets[i]] for i, uri in enumerate(DIGITS.uris)}


@pytest.fixture
def campaign(ls_server, ls_client, tmp_path, monkeypatch):
    """A Label Studio campaign on digits with its own database and project (deleted after)."""
    monkeypatch.setenv("LABEL_STUDIO_URL", ls_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_server.api_key)
    url = f"sqlite:///{tmp_path / 'ls.db'}"
    monkeypatch.setenv("ACTIVELABEL_DATABASE_URL", url)
    made = []

    def make(**overrides) -> tuple[CampaignConfig, object]:
        settings = dict(
            name=f"ls-{uuid.uuid4().hex[:10]}", annotator="labelstudio", strategy="entropy",
            rounds=2, batch_size=5, initial_labeled=12, mc_samples=3, epochs=2, device="cpu",
        )
        settings.update(overrides)
        config = CampaignConfig(**settings)
        engine = open_engine(url)
        prepare_campaign(engine, config)
        made.append(config.labelstudio_project)
        return config, engine

    yield make
    delete_projects_titled(ls_client, *made)


def field(obj, name):
    """SDK objects and plain dicts alike."""
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def project_tasks(ls_client, title: str) -> list:
    project = project_titled(ls_client, title)
    return list(ls_client.tasks.list(project=project.id, fields="all"))


def answer(ls_client, task, label: str, user_id: int | None = None) -> None:
    result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
    kwargs = {"completed_by": user_id} if user_id is not None else {}
    ls_client.annotations.create(id=task.id, result=result, **kwargs)


def stored_selection(engine, round_index: int) -> dict[int, Selection]:
    with session_scope(engine) as session:
        rows = session.scalars(
            select(Selection).join(Round, Round.id == Selection.round_id).where(Round.index == round_index)
        ).all()
        return {s.sample_id: s for s in rows}


def uri_of(engine) -> dict[int, str]:
    with session_scope(engine) as session:
        return dict(session.execute(select(Sample.id, Sample.uri)).all())


def test_two_round_campaign_labeled_in_label_studio(campaign, ls_client):
    config, engine = campaign()
    first = campaign_flow(config.name, config.rounds)
    assert [s.status for s in first] == ["waiting_for_labels"]

    tasks = project_tasks(ls_client, config.labelstudio_project)
    selection = stored_selection(engine, 1)
    assert sorted(t.data["sample_id"] for t in tasks) == sorted(selection)
    with session_scope(engine) as session:
        version = session.scalar(select(Round.model_version).where(Round.index == 1))
    for task in tasks:
        stored = selection[task.data["sample_id"]]
        assert str(task.id) == stored.external_task_id
        assert len(task.predictions) == 1
        prediction = task.predictions[0]
        assert field(prediction, "model_version") == version
        assert field(prediction, "score") == pytest.approx(stored.rank / config.batch_size)
        assert task.data["confidence"] == pytest.approx(stored.confidence)
        assert field(field(field(prediction, "result")[0], "value"), "choices") == [stored.predicted_label]
        assert task.data["uncertainty"] == pytest.approx(stored.score)
        assert task.data["image"].startswith("data:image/png;base64,")

    # Pushing again (a rerun of the same round) adds nothing.
    with session_scope(engine) as session:
        round_id = session.scalar(select(Round.id).where(Round.index == 1))
        session.execute(Round.__table__.update().where(Round.id == round_id).values(status=RoundStatus.pushing))
    steps.push_step(engine, round_id)
    assert len(project_tasks(ls_client, config.labelstudio_project)) == config.batch_size

    uris = uri_of(engine)
    for task in tasks:
        answer(ls_client, task, TRUTH[uris[task.data["sample_id"]]])
    second = campaign_flow(config.name, config.rounds)
    assert [s.status for s in second] == ["complete", "waiting_for_labels"]
    assert second[0].index == 1 and second[1].index == 2
    assert len(project_tasks(ls_client, config.labelstudio_project)) == 2 * config.batch_size

    new_tasks = [t for t in project_tasks(ls_client, config.labelstudio_project) if not t.annotations]
    assert len(new_tasks) == config.batch_size
    for task in new_tasks:
        answer(ls_client, task, TRUTH[uris[task.data["sample_id"]]])
    third = campaign_flow(config.name, config.rounds)
    assert [s.status for s in third] == ["complete"]

    with session_scope(engine) as session:
        rows = session.execute(
            select(Sample.uri, Annotation.label, Annotation.source, Annotation.round_id)
            .join(Sample, Sample.id == Annotation.sample_id).where(Annotation.source == "labelstudio")
        ).all()
        assert len(rows) == 2 * config.batch_size
        assert all(label == TRUTH[uri] for uri, label, _, _ in rows)
        campaign_id = session.scalar(select(Round.campaign_id))
        assert len(resolved_labels(session, campaign_id)) == config.initial_labeled + 2 * config.batch_size
    # Syncing again adds nothing.
    assert sync_flow(config.name).new_labels == 0
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Annotation)) == config.initial_labeled + 10


def test_two_annotators_resolve_by_majority_and_record_agreement(campaign, ls_client):
    config, engine = campaign(annotations_per_task=2, rounds=1, batch_size=3)
    assert campaign_flow(config.name, 1)[0].status == "waiting_for_labels"
    second = ls_client.users.create(
        username=f"ann-{uuid.uuid4().hex[:6]}", email=f"ann-{uuid.uuid4().hex[:6]}@example.com",
        password="annotator-pw-123",
    )
    uris = uri_of(engine)
    tasks = sorted(project_tasks(ls_client, config.labelstudio_project), key=lambda t: t.id)
    disagreed = tasks[0]
    for task in tasks:
        truth = TRUTH[uris[task.data["sample_id"]]]
        answer(ls_client, task, truth)
        if task is not disagreed:
            # Only one of two answers: the sample is not resolved yet.
            assert sync_flow(config.name).pending >= 1
        other = str((int(truth) + 1) % 10) if task is disagreed else truth
        answer(ls_client, task, other, user_id=second.id)

    result = sync_flow(config.name)
    assert result.pending == 0
    with session_scope(engine) as session:
        assert session.scalar(select(Round.status)) == RoundStatus.complete
        answers = session.execute(
            select(Annotation.sample_id, Annotation.annotator, Annotation.label)
            .where(Annotation.source == "labelstudio")
        ).all()
        assert len(answers) == 6
        assert len({a for _, a, _ in answers}) == 2  # two different annotators
        campaign_id = session.scalar(select(Round.campaign_id))
        resolved = resolved_labels(session, campaign_id, min_votes=2)
    for task in tasks:
        label = resolved[task.data["sample_id"]]
        truth = TRUTH[uris[task.data["sample_id"]]]
        assert label.votes == 2
        # A 1-1 tie goes to the answer given first (the truth here).
        assert label.label == truth
        assert label.agreement == (0.5 if task is disagreed else 1.0)
    assert sync_flow(config.name).new_labels == 0


def test_unknown_label_is_rejected_with_task_and_label_and_a_skip_is_stored_apart(campaign, ls_client, caplog):
    config, engine = campaign(rounds=1, batch_size=3)
    campaign_flow(config.name, 1)
    tasks = sorted(project_tasks(ls_client, config.labelstudio_project), key=lambda t: t.id)
    uris = uri_of(engine)
    answer(ls_client, tasks[0], "zebra")
    ls_client.annotations.create(id=tasks[1].id, result=[], was_cancelled=True)
    answer(ls_client, tasks[2], TRUTH[uris[tasks[2].data["sample_id"]]])

    result = sync_flow(config.name)
    # The skip used to be dropped, leaving 2 samples pending for ever (trial 16 F2). Now it is
    # stored as a skip (not an answer) and, with one annotator per task, sets its sample aside:
    # only the rejected sample is still waited for, and the round waits for it (2 of 2 needed).
    assert (result.new_labels, result.rejected, result.pending, result.skipped, result.set_aside) == (2, 1, 1, 1, 1)
    with session_scope(engine) as session:
        rejected = session.execute(
            select(Annotation.label, Annotation.reason, Annotation.status)
            .where(Annotation.status == AnnotationStatus.rejected)
        ).all()
        assert session.scalar(select(Round.status)) == RoundStatus.waiting_for_labels
    assert len(rejected) == 1
    label, reason, _ = rejected[0]
    assert label == "zebra"
    assert f"task {tasks[0].id}" in reason and "'zebra' is not in the label set" in reason
    assert any("zebra" in r.getMessage() for r in caplog.records)
    # Stored once: syncing again changes nothing.
    assert sync_flow(config.name).new_labels == 0


def test_label_studio_down_mid_push_leaves_the_round_pushing_then_resumes(campaign, ls_client, monkeypatch, ls_server):
    from activelabel.annotation.labelstudio import LabelStudioUnavailableError

    config, engine = campaign(rounds=1, batch_size=4)
    campaign_id = lookup.campaign_id(engine, config.name)
    round_id = steps.start_round(engine, campaign_id)
    for step in (steps.train_step, steps.score_step, steps.select_step):
        step(engine, round_id)
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(LabelStudioUnavailableError) as info:
        steps.push_step(engine, round_id)
    assert "http://127.0.0.1:9" in str(info.value)
    assert ls_server.api_key not in str(info.value)
    with session_scope(engine) as session:
        assert session.get(Round, round_id).status == RoundStatus.pushing

    monkeypatch.setenv("LABEL_STUDIO_URL", ls_server.url)
    summary = campaign_flow(config.name, 1)[0]
    assert summary.status == "waiting_for_labels"
    assert len(project_tasks(ls_client, config.labelstudio_project)) == 4


def test_crash_between_import_and_database_write_creates_no_second_task(campaign, ls_client):
    config, engine = campaign(rounds=1, batch_size=4)
    campaign_id = lookup.campaign_id(engine, config.name)
    round_id = steps.start_round(engine, campaign_id)
    for step in (steps.train_step, steps.score_step, steps.select_step):
        step(engine, round_id)

    def crash(step: str, round_index: int) -> None:
        if step == "push":  # the process dies after Label Studio imported, before our commit
            raise SystemExit("crashed after import")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(steps, "crash_point", crash)
        with pytest.raises(SystemExit):
            steps.push_step(engine, round_id)
    assert len(project_tasks(ls_client, config.labelstudio_project)) == 4
    assert all(s.external_task_id is None for s in stored_selection(engine, 1).values())

    steps.push_step(engine, round_id)
    tasks = project_tasks(ls_client, config.labelstudio_project)
    assert len(tasks) == 4
    selection = stored_selection(engine, 1)
    assert {str(t.id) for t in tasks} == {s.external_task_id for s in selection.values()}


def test_watch_starts_the_next_round_when_the_webhook_reports_labels(campaign, ls_client):
    """Annotators label in the background; with a 10-minute poll interval, only the webhook
    can make the watcher notice in time."""
    import threading

    from activelabel.flows.watch import watch_campaign

    config, engine = campaign(rounds=2, batch_size=3)
    uris = uri_of(engine)
    stop = threading.Event()

    def annotators() -> None:
        while not stop.wait(0.5):
            # Not created yet on a loaded machine: look again (project_titled would raise, and
            # end this thread: nobody would answer and the watch would wait out its deadline).
            if not projects_titled(ls_client, config.labelstudio_project):
                continue
            for task in project_tasks(ls_client, config.labelstudio_project):
                if not task.annotations:
                    answer(ls_client, task, TRUTH[uris[task.data["sample_id"]]])

    worker = threading.Thread(target=annotators, daemon=True)
    worker.start()
    finished: list[int] = []
    started = __import__("time").monotonic()
    try:
        done = watch_campaign(
            engine, config.name, 2, poll_seconds=600, webhook=("127.0.0.1", 0),
            on_round=lambda summary: finished.append(summary.index), deadline_seconds=240,
        )
    finally:
        stop.set()
        worker.join(timeout=10)
    assert done == 2 and finished == [1, 2]
    assert __import__("time").monotonic() - started < 240
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).where(Annotation.source == "labelstudio")) == 6
    # The rounds are done: the watch deleted its webhook on the way out.
    project = project_titled(ls_client, config.labelstudio_project)
    assert [w for w in ls_client.webhooks.list(project=str(project.id)) if w.project == project.id] == []


def test_image_files_are_served_from_the_document_root(campaign, ls_client, ls_server, tmp_path):
    import httpx

    from tests_support_imagefolder import write_folder

    if ls_server.document_root is None:
        pytest.skip("this Label Studio server's LOCAL_FILES_DOCUMENT_ROOT is unknown")
    folder = ls_server.document_root / f"pets-{uuid.uuid4().hex[:8]}"
    write_folder(folder, per_class=8)
    config, engine = campaign(
        dataset=f"imagefolder:{folder}?size=8", rounds=1, batch_size=3, initial_labeled=6,
        document_root=str(ls_server.document_root),
    )
    assert campaign_flow(config.name, 1)[0].status == "waiting_for_labels"
    tasks = project_tasks(ls_client, config.labelstudio_project)
    assert len(tasks) == 3
    uris = uri_of(engine)
    for task in tasks:
        relative = f"{folder.name}/{uris[task.data['sample_id']]}"
        assert task.data["image"] == f"/data/local-files/?d={relative}"
        served = httpx.get(ls_server.url + task.data["image"],
                           headers={"Authorization": f"Token {ls_server.api_key}"})
        assert served.status_code == 200
        assert served.content == (ls_server.document_root / relative).read_bytes()


def test_image_files_outside_the_document_root_are_refused(campaign, ls_server, tmp_path):
    from activelabel.errors import ConfigError
    from tests_support_imagefolder import write_folder

    outside = tmp_path / "elsewhere"
    write_folder(outside, per_class=8)
    root = ls_server.document_root or tmp_path / "root"
    root.mkdir(exist_ok=True)
    config, engine = campaign(
        dataset=f"imagefolder:{outside}?size=8", rounds=1, batch_size=3, initial_labeled=6,
        document_root=str(root),
    )
    with pytest.raises(ConfigError) as info:  # the setting named (trial7 #9)
        campaign_flow(config.name, 1)
    assert str(info.value).startswith("annotator.document_root: the data folder")
    assert str(outside.resolve()) in str(info.value) and str(root.resolve()) in str(info.value)
    with session_scope(engine) as session:
        assert session.scalar(select(Round.status)) == RoundStatus.failed


def test_a_round_never_waits_on_an_answer_the_change_cursor_missed(campaign, ls_client):
    """The cursor is pushed past every change on purpose (as a clock or race could): the tasks
    still out are read whole anyway, so the round completes."""
    from activelabel.storage.repository import set_sync_cursor

    config, engine = campaign(rounds=1, batch_size=3)
    assert campaign_flow(config.name, 1)[0].status == "waiting_for_labels"
    uris = uri_of(engine)
    for task in project_tasks(ls_client, config.labelstudio_project):
        answer(ls_client, task, TRUTH[uris[task.data["sample_id"]]])
    with session_scope(engine) as session:
        campaign_id = session.scalar(select(Round.campaign_id))
        set_sync_cursor(session, campaign_id, "labelstudio", "2999-01-01T00:00:00.000000Z")
    result = sync_flow(config.name)
    assert result.pending == 0 and result.new_labels == 3
    with session_scope(engine) as session:
        assert session.scalar(select(Round.status)) == RoundStatus.complete
