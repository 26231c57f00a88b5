"""A segmentation campaign whose own images Label Studio serves at their natural size.

The images (50 x 37 pixels: neither square nor a whole multiple of the 16-pixel training size)
live under the server's LOCAL_FILES_DOCUMENT_ROOT. Annotators paint them at full resolution;
the masks are stored and exported at that size, and each round trains on them resized to the
training size by nearest neighbour, as the seed mask files are. Everything here is real: the
server serves the files, the annotations are made through its API, Prefect runs the rounds.
"""

from __future__ import annotations

import csv
import shutil
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from activelabel.annotation.brush import mask_to_results, results_to_mask
from activelabel.campaign import prepare_campaign
from activelabel.campaign.data import clear_cache
from activelabel.campaign.export import export_labels
from activelabel.campaign.file import load_campaign_file
from activelabel.flows import campaign_flow, sync_flow
from activelabel.pipeline.masks import mask_from_png_bytes, resize_mask
from activelabel.pipeline.shapes import SHAPE_CLASSES, make_shapes
from activelabel.storage import Annotation, Round, Sample, Selection, open_engine, session_scope

from tests_support_lsserver import delete_projects_titled

pytestmark = pytest.mark.labelstudio
SIZE = 16  # training size
WIDTH, HEIGHT = 50, 37  # the files' natural size
LABELS = list(SHAPE_CLASSES)

CAMPAIGN = """
[campaign]
name = "{name}"
task = "segmentation"
strategy = "entropy"
rounds = 2
batch_size = 3
mc_samples = 2
epochs = 1
device = "cpu"

[data]
pool = "{pool}"
labeled = "seed/images"
labels = {labels}
evaluation_size = 3
image_size = {size}
channels = 3
workers = 0

[annotator]
kind = "labelstudio"
document_root = "{root}"

[segmentation]
labeled_masks = "seed/masks"
heatmap_dir = "heatmaps"
"""


def write_natural(shapes, images: Path, masks: Path | None, prefix: str) -> dict[str, np.ndarray]:
    """Each generated image and mask at WIDTH x HEIGHT (image bilinear, mask nearest); the true
    masks at that size, by file name."""
    images.mkdir(parents=True)
    if masks is not None:
        masks.mkdir(parents=True)
    truth = {}
    for i, (image, mask) in enumerate(zip(shapes.images, shapes.masks)):
        name = f"{prefix}{i:03d}.png"
        pixels = (np.asarray(image).transpose(1, 2, 0) * 255).round().astype(np.uint8)
        Image.fromarray(pixels).resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR).save(images / name)
        truth[name] = resize_mask(mask, HEIGHT, WIDTH)
        if masks is not None:
            Image.fromarray(truth[name].astype(np.uint8)).save(masks / name)
    return truth


def sent(engine, index: int) -> dict[str, int]:
    with session_scope(engine) as session:
        rows = session.execute(
            select(Sample.uri, Selection.external_task_id).join(Selection, Selection.sample_id == Sample.id)
            .join(Round, Round.id == Selection.round_id).where(Round.index == index)).all()
    return {uri: int(task) for uri, task in rows}


def test_served_images_are_painted_at_their_natural_size_and_trained_at_the_training_size(
        ls_server, ls_client, tmp_path, monkeypatch) -> None:
    if ls_server.document_root is None:
        pytest.skip("this Label Studio server's LOCAL_FILES_DOCUMENT_ROOT is unknown")
    clear_cache()
    monkeypatch.setenv("LABEL_STUDIO_URL", ls_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_server.api_key)
    db_url = f"sqlite:///{tmp_path / 'al.db'}"
    monkeypatch.setenv("ACTIVELABEL_DATABASE_URL", db_url)
    served = ls_server.document_root / f"segserved-{uuid.uuid4().hex[:8]}"
    truth = write_natural(make_shapes(18, seed=5, size=32), served, None, "pool")
    write_natural(make_shapes(6, seed=5, size=32, start=18), tmp_path / "seed" / "images", tmp_path / "seed" / "masks",
                  "seed")
    name = f"segserved-{uuid.uuid4().hex[:8]}"
    (tmp_path / "campaign.toml").write_text(CAMPAIGN.format(
        name=name, pool=served, labels=LABELS, size=SIZE, root=ls_server.document_root).replace("'", '"'))
    config, _ = load_campaign_file(tmp_path / "campaign.toml")
    engine = open_engine(db_url)
    prepare_campaign(engine, config)
    painted: dict[str, np.ndarray] = {}
    try:
        for index in (1, 2):
            assert campaign_flow(name, index)[-1].status == "waiting_for_labels"
            tasks = sent(engine, index)
            assert len(tasks) == 3
            for uri, task_id in tasks.items():
                task = ls_client.tasks.get(id=task_id)
                # the file itself, served by Label Studio from the document root
                assert task.data["image"] == f"/data/local-files/?d={served.name}/{uri}"
                answer = httpx.get(ls_server.url + task.data["image"],
                                   headers={"Authorization": f"Token {ls_server.api_key}"}, timeout=60)
                assert answer.status_code == 200 and answer.content == (served / uri).read_bytes()
                (prediction,) = task.predictions
                result = prediction["result"] if isinstance(prediction, dict) else prediction.result
                if index == 1:  # the evaluation round: random picks, no model yet
                    assert result == []
                else:  # the pre-annotation is at the file's size, the training mask enlarged
                    assert {(r["original_height"], r["original_width"]) for r in result} <= {(HEIGHT, WIDTH)}
                    predicted = results_to_mask(result, LABELS, height=SIZE, width=SIZE, keep_size=True)
                    assert predicted.shape == (HEIGHT, WIDTH) if result else predicted.shape == (SIZE, SIZE)
                # The annotator paints the true mask on the full-size image.
                ls_client.annotations.create(id=task_id, result=mask_to_results(truth[uri], LABELS))
                painted[uri] = truth[uri]
            assert sync_flow(name).pending == 0

        with session_scope(engine) as session:
            stored = dict(session.execute(select(Sample.uri, Annotation.mask).join(
                Sample, Sample.id == Annotation.sample_id).where(Annotation.mask.is_not(None))).all())
            second = session.scalars(select(Round).where(Round.index == 2)).one()
            # Trained on the 6 seed masks, measured on the 3 evaluation masks at the training size.
            assert second.labeled_count == 6 and second.segmentation_metrics["pixels"] == 3 * SIZE * SIZE
        assert set(painted) <= set(stored)  # beside the seed masks
        for uri, mask in painted.items():  # stored as painted: full size, not reduced
            np.testing.assert_array_equal(mask_from_png_bytes(stored[uri]), mask)
    finally:
        delete_projects_titled(ls_client, config.labelstudio_project)
        shutil.rmtree(served, ignore_errors=True)

    count = export_labels(engine, name, tmp_path / "out" / "labels.csv")
    assert count.rows == 6 + 6
    exported = {}
    for row in csv.DictReader((tmp_path / "out" / "labels.csv").open()):
        with Image.open(tmp_path / "out" / row["mask"]) as png:
            exported[Path(row["path"]).name] = np.asarray(png)
    for uri, mask in painted.items():  # the export holds the annotators' masks at the images' size
        np.testing.assert_array_equal(exported[Path(uri).name], mask)
