"""A document root Label Studio does not serve from is refused before any task is sent, and a
corrected one is carried to the tasks still out (trial 15 F1, F2).

Real Label Studio, real files under its LOCAL_FILES_DOCUMENT_ROOT. The slip: `document_root`
set to the folder the photos are in, inside the server's real root. Every local check passes and
Label Studio accepts the project's local-files storage, but it resolves `?d=<path>` under its own
root: every image answered 404 and annotators saw broken images, with nothing said.
"""

from __future__ import annotations

import shutil
import uuid

import httpx
import pytest

from activelabel.annotation.labelstudio import LabelStudioError
from activelabel.campaign import prepare_campaign
from activelabel.campaign.data import clear_cache
from activelabel.campaign.file import load_campaign_file
from activelabel.flows import campaign_flow
from activelabel.storage import Campaign, Round, open_engine, session_scope
from tests_support_campaignfile import use_label_studio, write_campaign_file
from tests_support_lsserver import delete_projects_titled, project_titled
from tests_support_lstasks import tasks_of_round
from tests_support_owndata import write_unlabeled_pool

pytestmark = pytest.mark.labelstudio

SETTINGS = {"campaign.batch_size": 4, "data.evaluation_size": 0, "campaign.epochs": 1, "campaign.mc_samples": 2,
            "campaign.device": "cpu"}


def _served(ls_server, image: str) -> int:
    return httpx.get(ls_server.url + image, headers={"Authorization": f"Token {ls_server.api_key}"}).status_code


@pytest.fixture
def photos(ls_server):
    if ls_server.document_root is None:
        pytest.skip("this Label Studio server's LOCAL_FILES_DOCUMENT_ROOT is unknown")
    base = ls_server.document_root.resolve() / f"photos-{uuid.uuid4().hex[:8]}"
    write_unlabeled_pool(base / "images", count=12)  # the template's data.pool, beside the file
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_a_document_root_inside_the_servers_is_refused_before_a_task_is_sent_then_the_round_resumes(
        ls_server, ls_client, tmp_path, monkeypatch, photos) -> None:
    root = ls_server.document_root.resolve()
    db_url = use_label_studio(monkeypatch, ls_server, tmp_path)
    name = f"wrongroot-{uuid.uuid4().hex[:8]}"
    file = photos / "campaign.toml"
    write_campaign_file(file, name,
                        settings={**SETTINGS, "annotator.document_root": str(photos)})
    config, _ = load_campaign_file(file)
    engine = open_engine(db_url)
    try:
        prepare_campaign(engine, config)
        with pytest.raises(LabelStudioError) as refused:
            campaign_flow(name, 1)
        message = str(refused.value)
        assert "cannot serve the campaign's images" in message and "answered HTTP 404" in message
        assert "/data/local-files/?d=images/" in message and str(photos / "images") in message
        assert f"annotator.document_root ({photos}) must be the folder the server was started with" in message
        assert "No task was sent: the round resumes at its push" in message
        project = project_titled(ls_client, config.labelstudio_project)
        assert list(ls_client.tasks.list(project=project.id)) == []
        with session_scope(engine) as session:
            status, step = session.query(Round.status, Round.failed_step).filter(Round.index == 1).one()
            assert (status.value, step) == ("failed", "pushing")  # resumed from that step

        # Corrected: the same round resumes at its push, and Label Studio serves every image.
        write_campaign_file(file, name, settings={**SETTINGS, "annotator.document_root": str(root)})
        clear_cache()
        fixed, _ = load_campaign_file(file)
        said: list[str] = []
        prepare_campaign(engine, fixed, say=said.append)
        assert said == [f"Campaign {name!r}: annotator.document_root changed ({photos} -> {root}); "
                        "no Label Studio task is still out"]
        assert campaign_flow(name, 1)[-1].status == "waiting_for_labels"
        sent = tasks_of_round(engine, 1)
        assert len(sent) == 4 and len(list(ls_client.tasks.list(project=project.id))) == 4
        for task_id in sent.values():
            image = ls_client.tasks.get(id=task_id).data["image"]
            assert image.startswith(f"/data/local-files/?d={photos.name}/images/") and _served(ls_server, image) == 200
    finally:
        delete_projects_titled(ls_client, config.labelstudio_project)


def test_a_corrected_document_root_is_carried_to_the_tasks_an_earlier_version_sent_with_the_wrong_one(
        ls_server, ls_client, tmp_path, monkeypatch, photos) -> None:
    # The state an earlier activelabel left (no check before the import): tasks out whose images
    # answer 404, and the wrong root stored. Made here by sending with the right root, then
    # storing the wrong one and pointing the tasks where it pointed them.
    root = ls_server.document_root.resolve()
    db_url = use_label_studio(monkeypatch, ls_server, tmp_path)
    name = f"fixroot-{uuid.uuid4().hex[:8]}"
    file = photos / "campaign.toml"
    write_campaign_file(file, name, settings={**SETTINGS, "annotator.document_root": str(root)})
    config, _ = load_campaign_file(file)
    engine = open_engine(db_url)
    try:
        campaign_id = prepare_campaign(engine, config)
        assert campaign_flow(name, 1)[-1].status == "waiting_for_labels"
        sent = tasks_of_round(engine, 1)
        right = {t: ls_client.tasks.get(id=t).data for t in sent.values()}
        for task_id, data in right.items():
            broken = data["image"].replace(f"?d={photos.name}/", "?d=")
            ls_client.tasks.update(id=task_id, data={**data, "image": broken})
            assert _served(ls_server, broken) == 404
        with session_scope(engine) as session:
            campaign = session.get(Campaign, campaign_id)
            campaign.config = {**campaign.config, "document_root": str(photos)}

        said: list[str] = []
        assert prepare_campaign(engine, config, say=said.append) == campaign_id
        assert said == [f"Campaign {name!r}: annotator.document_root changed ({photos} -> {root}); Label Studio: "
                        f"4 task(s) still out now show images from {photos / 'images'}"]
        for task_id, data in right.items():
            assert ls_client.tasks.get(id=task_id).data == data and _served(ls_server, data["image"]) == 200
        said.clear()
        assert prepare_campaign(engine, config, say=said.append) == campaign_id and said == []  # said once
    finally:
        delete_projects_titled(ls_client, config.labelstudio_project)
