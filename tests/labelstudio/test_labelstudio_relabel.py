"""A labeled image whose file changed, relabeled through a real Label Studio (embedded images).

The task holds a copy of the old picture (a PNG data URI), so ``--relabel-changes`` puts the new
one in the same task and clears its answers there; the old answer stays in the database as
history, the annotators' new answer becomes the label, and a rerun sends nothing new.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from activelabel.campaign import prepare_campaign
from activelabel.campaign.data import campaign_data, clear_cache
from activelabel.campaign.file import load_campaign_file
from activelabel.campaign.setup import build_annotator
from activelabel.errors import CampaignStateError
from activelabel.flows import campaign_flow, sync_flow
from activelabel.storage import Annotation, AnnotationStatus, Sample, open_engine, session_scope
from activelabel.storage.repository import resolved_labels
from tests_support_campaignfile import use_label_studio, write_campaign_file
from tests_support_lstasks import answer, tasks_of_round
from tests_support_owndata import LABELS, write_unlabeled_pool
from tests_support_lsserver import delete_projects_titled, project_titled

pytestmark = pytest.mark.labelstudio


def _campaign(tmp_path, monkeypatch, ls_server, annotator: str = "", settings: dict | None = None):
    db_url = use_label_studio(monkeypatch, ls_server, tmp_path)
    write_unlabeled_pool(tmp_path / "images", count=30)
    name = f"relabel-{uuid.uuid4().hex[:8]}"
    path = write_campaign_file(tmp_path / "campaign.toml", name, settings={
        "campaign.batch_size": 4, "data.evaluation_size": 4, "campaign.epochs": 1, "campaign.mc_samples": 2,
        "campaign.device": "cpu", **(settings or {})}, extra={"annotator": annotator} if annotator else {})
    config, _ = load_campaign_file(path)
    engine = open_engine(db_url)
    prepare_campaign(engine, config)
    return name, config, engine


def _project_tasks(ls_client, title: str) -> list:
    project = project_titled(ls_client, title)
    return list(ls_client.tasks.list(project=project.id, fields="all"))


def _invert(path) -> None:
    pixels = 255 - np.asarray(Image.open(path).convert("L"))
    Image.fromarray(pixels).save(path, format="PNG" if path.suffix.lower() == ".png" else "JPEG")


def test_changed_labeled_embedded_image_is_relabeled_in_its_task(ls_server, ls_client, tmp_path, monkeypatch) -> None:
    name, config, engine = _campaign(tmp_path, monkeypatch, ls_server)
    try:
        assert campaign_flow(name, 1)[-1].status == "waiting_for_labels"  # the evaluation batch
        sent = tasks_of_round(engine, 1)
        assert len(sent) == 4
        for uri, task_id in sent.items():
            answer(ls_client, task_id, LABELS[0])
        assert sync_flow(name).pending == 0
        uri, task_id = sorted(sent.items())[0]
        old_image = ls_client.tasks.get(task_id).data["image"]
        _invert(tmp_path / "images" / uri)

        with pytest.raises(CampaignStateError, match="1 labeled image"):
            prepare_campaign(engine, config)
        prepare_campaign(engine, config, relabel_changes=True)
        clear_cache()
        new_image = build_annotator(config, campaign_data(config)).image_source(uri)
        task = ls_client.tasks.get(task_id)
        assert new_image.startswith("data:image/") and new_image != old_image
        assert task.data["image"] == new_image and task.data["sample_id"] is not None
        assert not task.annotations  # served again as unlabeled
        with session_scope(engine) as session:
            sample_id = session.scalar(select(Sample.id).where(Sample.uri == uri))
            rows = list(session.scalars(select(Annotation).where(Annotation.sample_id == sample_id)))
            assert [(a.label, a.status) for a in rows] == [(LABELS[0], AnnotationStatus.rejected)]
            assert "image changed" in rows[0].reason
            assert sample_id not in resolved_labels(session, rows[0].campaign_id, 1)

        answer(ls_client, task_id, LABELS[1])
        sync_flow(name)
        with session_scope(engine) as session:
            rows = list(session.scalars(select(Annotation).where(Annotation.sample_id == sample_id).order_by(Annotation.id)))
            assert [(a.label, a.status) for a in rows] == [
                (LABELS[0], AnnotationStatus.rejected), (LABELS[1], AnnotationStatus.accepted)]
            assert resolved_labels(session, rows[0].campaign_id, 1)[sample_id].label == LABELS[1]

        before = {t.id: (t.data["image"], len(t.annotations or [])) for t in _project_tasks(ls_client, config.labelstudio_project)}
        prepare_campaign(engine, config, relabel_changes=True)  # a rerun: nothing changed since
        campaign_flow(name, 1)
        sync_flow(name)
        after = {t.id: (t.data["image"], len(t.annotations or [])) for t in _project_tasks(ls_client, config.labelstudio_project)}
        assert after == before and len(after) == 4
        with session_scope(engine) as session:
            labels = [(a.label, a.status) for a in session.scalars(
                select(Annotation).where(Annotation.sample_id == sample_id).order_by(Annotation.id))]
        assert labels == [(LABELS[0], AnnotationStatus.rejected), (LABELS[1], AnnotationStatus.accepted)]
    finally:
        delete_projects_titled(ls_client, config.labelstudio_project)


def test_served_images_refuse_relabel_since_the_task_shows_the_new_file(ls_server, ls_client, tmp_path, monkeypatch) -> None:
    name, config, engine = _campaign(tmp_path, monkeypatch, ls_server,
                                     annotator='image_url_prefix = "http://images.example/"')
    assert config.image_url_prefix == "http://images.example/"
    try:
        assert campaign_flow(name, 1)[-1].status == "waiting_for_labels"
        sent = tasks_of_round(engine, 1)
        for task_id in sent.values():
            answer(ls_client, task_id, LABELS[2])
        sync_flow(name)
        uri, task_id = sorted(sent.items())[0]
        _invert(tmp_path / "images" / uri)
        with pytest.raises(CampaignStateError, match="shows the new file already"):
            prepare_campaign(engine, config, relabel_changes=True)
        assert len(ls_client.tasks.get(task_id).annotations) == 1
    finally:
        delete_projects_titled(ls_client, config.labelstudio_project)
