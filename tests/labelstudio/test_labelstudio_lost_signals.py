"""Sync on a Label Studio whose task counters stopped moving.

Label Studio 1.23 keeps a task's ``total_annotations`` and ``is_labeled`` through Django signals.
Deleting a project detaches *every* signal of the server process while it runs
(``core.utils.common.temporary_disconnect_all_signals`` stashes ``signal.receivers`` and puts
them back after). Two deletions at once interleave: the second stashes the empty list and puts it
back last, so the signals stay detached until the server restarts. From then on annotations are
stored but their task's ``total_annotations`` stays 0.

CI's shared server got there when both xdist workers deleted their test projects at once, and
sync's first read, filtered on ``total_annotations > 0``, missed every annotation (an edit made
after it was never seen). This module starts a server of its own, puts it into that state with
real concurrent deletions (nothing is mocked), and runs the sync scenario on it.
"""

from __future__ import annotations

import logging
import threading
import uuid

import pytest
from label_studio_sdk import LabelStudio

from activelabel.campaign import CampaignConfig, lookup, prepare_campaign, steps
from activelabel.storage import open_engine, session_scope
from activelabel.storage.repository import annotation_changes, resolved_labels

from tests_support_lsserver import own_server, project_titled
from tests_support_rounds import run_round

pytestmark = pytest.mark.labelstudio

CONFIG = ('<View><Image name="image" value="$image"/><Choices name="label" toName="image">'
          '<Choice value="a"/></Choices></View>')
TASKS_PER_DELETED_PROJECT = 300  # long enough deletions for two of them to overlap
ATTEMPTS = 8


def choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from own_server(tmp_path_factory.mktemp("labelstudio-lost-signals"))


@pytest.fixture(scope="module")
def client(server) -> LabelStudio:
    return LabelStudio(base_url=server.url, api_key=server.api_key, timeout=120)


def counters_move(client: LabelStudio) -> bool:
    """Whether an annotation created now raises its task's ``total_annotations``."""
    project = client.projects.create(title=f"probe-{uuid.uuid4().hex[:8]}", label_config=CONFIG)
    client.projects.import_tasks(id=project.id, request=[{"image": "/x/probe.png"}])
    task = next(iter(client.tasks.list(project=project.id)))
    client.annotations.create(id=task.id, result=choice("a"))
    moved = client.tasks.get(id=str(task.id)).total_annotations == 1
    client.projects.update(id=project.id, title=f"kept-{project.id}")  # deleting it would race too
    return moved


def delete_two_projects_at_once(client: LabelStudio) -> None:
    projects = [client.projects.create(title=f"doomed-{uuid.uuid4().hex[:8]}", label_config=CONFIG)
                for _ in range(2)]
    for project in projects:
        client.projects.import_tasks(id=project.id, request=[
            {"image": f"/x/{i}.png"} for i in range(TASKS_PER_DELETED_PROJECT)])
    start = threading.Barrier(len(projects))

    def delete(project_id: int) -> None:
        start.wait(timeout=60)
        client.projects.delete(id=project_id)

    threads = [threading.Thread(target=delete, args=(p.id,)) for p in projects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
        assert not thread.is_alive(), "a project deletion took over 300 s"


@pytest.fixture(scope="module")
def counters_stopped(client) -> None:
    """Put the server into the state CI's server reached: signals detached for good."""
    assert counters_move(client), "a fresh Label Studio should count annotations"
    for _ in range(ATTEMPTS):
        delete_two_projects_at_once(client)
        if not counters_move(client):
            return
    pytest.fail(f"{ATTEMPTS} pairs of concurrent project deletions left Label Studio's signals attached; "
                "the race this module reproduces did not happen (Label Studio changed?)")


def test_sync_reads_answers_edits_and_deletions_when_label_studio_counts_no_annotations(
        server, client, counters_stopped, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.api_key)
    config = CampaignConfig(name=f"lost-{uuid.uuid4().hex[:10]}", annotator="labelstudio", device="cpu",
                            strategy="entropy", rounds=3, batch_size=3, initial_labeled=12, mc_samples=2,
                            epochs=1, min_new_labels=1)
    engine = open_engine(f"sqlite:///{tmp_path / 'lost.db'}")
    prepare_campaign(engine, config)
    campaign_id = lookup.campaign_id(engine, config.name)
    run_round(engine, campaign_id, sync=False)
    project = project_titled(client, config.labelstudio_project)
    first, second, third = sorted(client.tasks.list(project=project.id, fields="all"), key=lambda t: t.id)
    one = client.annotations.create(id=first.id, result=choice("1"))
    two = client.annotations.create(id=second.id, result=choice("2"))
    # The state under test: Label Studio stored the annotations but counts none of them.
    assert [client.tasks.get(id=str(t.id)).total_annotations for t in (first, second)] == [0, 0]

    with caplog.at_level(logging.WARNING, logger="activelabel.annotation.labelstudio"):
        assert steps.sync_campaign(engine, campaign_id).new_labels == 2
    # The user is told why Label Studio's own queue misbehaves, and what fixes it.
    said = [r.getMessage().split(": ", 2)[2] for r in caplog.records if "does not count" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("2 of the ")
    assert "tasks this sync read hold annotations that Label Studio does not count (total_annotations 0" in said[0]
    assert "restart Label Studio" in caplog.text

    client.annotations.update(id=one.id, result=choice("7"))
    client.annotations.delete(id=two.id)
    client.annotations.create(id=third.id, result=choice("3"))
    result = steps.sync_campaign(engine, campaign_id)
    assert (result.new_labels, result.edited, result.deleted) == (1, 1, 1)
    with session_scope(engine) as session:
        labels = {sample: answer.label for sample, answer in resolved_labels(session, campaign_id).items()}
        changes = [(c.kind.value, c.old_label, c.new_label) for c in annotation_changes(session, campaign_id)]
    assert labels[first.data["sample_id"]] == "7"
    assert second.data["sample_id"] not in labels
    assert labels[third.data["sample_id"]] == "3"
    assert sorted(changes, key=str) == sorted([("edited", "1", "7"), ("deleted", "2", None)], key=str)
