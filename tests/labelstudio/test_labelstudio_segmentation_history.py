"""A repainted or deleted mask in a real Label Studio: the sync keeps the replaced mask in
``annotation_change.old_mask`` and the export writes it beside the current masks.

A cold-start round (no model trained: cheap) sends two images; an annotator paints both, the
sync stores the masks; the annotator repaints one (the annotation's result updated through the
SDK) and deletes the other, and each sync keeps the mask it replaces.
"""

from __future__ import annotations

import csv
import uuid

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from activelabel.annotation.brush import mask_to_results
from activelabel.campaign import CampaignConfig, prepare_campaign, steps
from activelabel.campaign.data import clear_cache
from activelabel.campaign.export import export_labels, mask_file_name
from activelabel.pipeline.masks import mask_from_png_bytes
from activelabel.storage import Annotation, Round, RoundKind, RoundStatus, Sample, Selection, open_engine, session_scope
from activelabel.storage.models import AnnotationChange, AnnotationChangeKind

from tests_support_lsserver import delete_projects_titled

pytestmark = pytest.mark.labelstudio
SIZE, SCALE = 32, 8
LABELS = ["background", "disc", "square", "line", "dot"]


def field(obj, name):
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def _mask(rows: slice, cls: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=np.int64)
    mask[rows] = cls
    return mask


def test_a_repainted_and_a_deleted_mask_are_kept_and_exported(ls_server, ls_client, tmp_path, monkeypatch) -> None:
    clear_cache()
    monkeypatch.setenv("LABEL_STUDIO_URL", ls_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_server.api_key)
    config = CampaignConfig(
        name=f"segkeep-{uuid.uuid4().hex[:8]}", task="segmentation", dataset=f"shapes?n=24&size={SIZE}",
        strategy="entropy", annotator="labelstudio", initial_labeled=0, min_labels_to_train=100,
        batch_size=2, rounds=1, mc_samples=2, epochs=1, device="cpu", heatmap_dir=str(tmp_path / "heatmaps"),
    )
    engine = open_engine(f"sqlite:///{tmp_path / 'al.db'}")
    campaign_id = prepare_campaign(engine, config)
    try:
        round_id = steps.start_round(engine, campaign_id)
        for step in (steps.train_step, steps.score_step, steps.select_step, steps.push_step):
            step(engine, round_id)
        with session_scope(engine) as session:
            rnd = session.get(Round, round_id)
            assert (rnd.kind, rnd.status) == (RoundKind.cold_start, RoundStatus.waiting_for_labels)
            sent = dict(session.execute(select(Selection.external_task_id, Selection.sample_id)
                                        .where(Selection.round_id == round_id)).all())
            uri_of = dict(session.execute(select(Sample.id, Sample.uri)).all())
        kept_task, gone_task = sorted(sent, key=int)
        first, repainted, deleted = _mask(slice(0, 16), 1), _mask(slice(8, 32), 2), _mask(slice(20, 24), 3)
        kept = ls_client.annotations.create(id=int(kept_task), result=mask_to_results(first, LABELS, scale=SCALE))
        gone = ls_client.annotations.create(id=int(gone_task), result=mask_to_results(deleted, LABELS, scale=SCALE))
        got = steps.sync_step(engine, round_id)
        assert (got.new_labels, got.rejected, got.edited, got.deleted) == (2, 0, 0, 0)

        # Repaint one annotation in Label Studio: the sync replaces the mask and keeps the old one.
        ls_client.annotations.update(id=field(kept, "id"), result=mask_to_results(repainted, LABELS, scale=SCALE))
        edited = steps.sync_campaign(engine, campaign_id)
        assert (edited.new_labels, edited.edited, edited.deleted) == (0, 1, 0)
        # Delete the other one: its mask goes from the annotations and stays in the history.
        ls_client.annotations.delete(id=field(gone, "id"))
        removed = steps.sync_campaign(engine, campaign_id)
        assert (removed.new_labels, removed.edited, removed.deleted) == (0, 0, 1)
        assert steps.sync_campaign(engine, campaign_id).edited == 0  # nothing recorded twice
    finally:
        delete_projects_titled(ls_client, config.labelstudio_project)

    with session_scope(engine) as session:
        current = {a.external_id: mask_from_png_bytes(a.mask) for a in session.scalars(select(Annotation))}
        changes = [(c.id, c.external_id, c.kind, c.sample_id, c.old_label, c.new_label, c.old_mask)
                   for c in session.scalars(select(AnnotationChange).order_by(AnnotationChange.id))]
    assert set(current) == {str(field(kept, "id"))}
    np.testing.assert_array_equal(current[str(field(kept, "id"))], repainted)
    assert [(ext, kind, sample, old, new) for _, ext, kind, sample, old, new, _ in changes] == [
        (str(field(kept, "id")), AnnotationChangeKind.edited, sent[kept_task], "<mask>", "<mask>"),
        (str(field(gone, "id")), AnnotationChangeKind.deleted, sent[gone_task], "<mask>", None)]
    np.testing.assert_array_equal(mask_from_png_bytes(changes[0][-1]), first)
    np.testing.assert_array_equal(mask_from_png_bytes(changes[1][-1]), deleted)

    # The export: the current mask under masks/, the two old ones under mask-history/, listed.
    out = tmp_path / "out"
    exported = export_labels(engine, config.name, out / "labels.csv")
    assert (exported.rows, exported.changes, exported.old_masks) == (1, 2, 2)
    assert exported.history == out / "mask-history.csv"
    assert exported.describe() == "1 labeled sample"
    assert exported.describe_history() == (
        f"Mask history: 2 edited or deleted mask annotations (2 old masks kept) in {out / 'mask-history.csv'}, "
        f"the old masks under {out / 'mask-history'}/")
    history = list(csv.DictReader((out / "mask-history.csv").open()))
    kept_mask = f"masks/{mask_file_name(uri_of[sent[kept_task]]).as_posix()}"
    stems = [mask_file_name(uri_of[sent[t]]).with_suffix("").as_posix() for t in (kept_task, gone_task)]
    assert [(r["change"], r["kind"], r["annotation"], r["old_mask"], r["mask"], r["old_status"], r["new_status"])
            for r in history] == [
        (str(changes[0][0]), "edited", str(field(kept, "id")),
         f"mask-history/{stems[0]}/change-{changes[0][0]}-annotation-{field(kept, 'id')}-edited.png",
         kept_mask, "accepted", "accepted"),
        (str(changes[1][0]), "deleted", str(field(gone, "id")),
         f"mask-history/{stems[1]}/change-{changes[1][0]}-annotation-{field(gone, 'id')}-deleted.png",
         "", "accepted", ""),
    ]
    assert all(r["round"] == "1" and r["changed_at"] for r in history)
    for row, old in zip(history, (first, deleted)):
        with Image.open(out / row["old_mask"]) as png:
            assert png.mode == "P"
            np.testing.assert_array_equal(np.asarray(png), old)
    with Image.open(out / kept_mask) as png:
        np.testing.assert_array_equal(np.asarray(png), repainted)
