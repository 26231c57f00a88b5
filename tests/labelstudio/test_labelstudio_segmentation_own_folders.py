"""A user's own unlabeled images plus a small seed folder of masks, labeled through a real
Label Studio (issue 10): nothing simulated, no test folder, so annotators first paint a random
evaluation set (no model yet: no pre-annotation, a placeholder heatmap), then an active round
whose tasks carry the model's brush pre-annotation and heatmap. The export holds their masks.
"""

from __future__ import annotations

import base64
import csv
import io
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from activelabel.annotation.brush import mask_to_results, results_to_mask
from activelabel.campaign import campaign_summaries, prepare_campaign
from activelabel.campaign.data import clear_cache
from activelabel.campaign.export import export_labels
from activelabel.campaign.file import load_campaign_file
from activelabel.flows import campaign_flow, sync_flow
from activelabel.pipeline.shapes import SHAPE_CLASSES, make_shapes, write_segmentation_folder
from activelabel.storage import Heatmap, Round, Sample, Selection, open_engine, session_scope

from tests_support_lsserver import delete_projects_titled

pytestmark = pytest.mark.labelstudio
SIZE, SCALE = 32, 8

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
pool = "pool"
labeled = "seed/images"
labels = ["background", "disc", "square", "line", "dot"]
evaluation_size = 3
image_size = 32
channels = 3
workers = 0

[segmentation]
labeled_masks = "seed/masks"
heatmap_dir = "heatmaps"
"""


def sent(engine, index: int) -> dict[str, int]:
    with session_scope(engine) as session:
        rows = session.execute(
            select(Sample.uri, Selection.external_task_id).join(Selection, Selection.sample_id == Sample.id)
            .join(Round, Round.id == Selection.round_id).where(Round.index == index)).all()
    return {uri: int(task) for uri, task in rows}


def test_own_images_and_seed_masks_through_label_studio(ls_server, ls_client, tmp_path, monkeypatch) -> None:
    clear_cache()
    monkeypatch.setenv("LABEL_STUDIO_URL", ls_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_server.api_key)
    db_url = f"sqlite:///{tmp_path / 'al.db'}"
    monkeypatch.setenv("ACTIVELABEL_DATABASE_URL", db_url)
    pool = make_shapes(24, seed=4, size=SIZE)
    write_segmentation_folder(make_shapes(6, seed=4, size=SIZE, start=24), tmp_path / "seed")
    write_segmentation_folder(pool, tmp_path / "shapes")
    (tmp_path / "shapes" / "images").rename(tmp_path / "pool")  # the pool: images only, no mask
    truth = {f"{Path(u).stem}.png": m for u, m in zip(pool.uris, pool.masks)}
    name = f"ownseg-{uuid.uuid4().hex[:8]}"
    (tmp_path / "campaign.toml").write_text(CAMPAIGN.format(name=name))
    config, _ = load_campaign_file(tmp_path / "campaign.toml")
    assert config.annotator == "labelstudio" and config.evaluation_size == 3
    engine = open_engine(db_url)
    prepare_campaign(engine, config)
    painted: dict[str, np.ndarray] = {}
    try:
        for index in (1, 2):
            assert campaign_flow(name, index)[-1].status == "waiting_for_labels"
            tasks = sent(engine, index)
            assert len(tasks) == 3
            with session_scope(engine) as session:
                heatmaps = {uri: path for uri, path in session.execute(
                    select(Sample.uri, Heatmap.path).join(Sample, Sample.id == Heatmap.sample_id)
                    .join(Round, Round.id == Heatmap.round_id).where(Round.index == index))}
            for uri, task_id in tasks.items():
                task = ls_client.tasks.get(id=task_id)
                with Image.open(io.BytesIO(base64.b64decode(task.data["image"].split(",", 1)[1]))) as im:
                    assert im.size == (SIZE * SCALE, SIZE * SCALE)
                (prediction,) = task.predictions
                result = prediction["result"] if isinstance(prediction, dict) else prediction.result
                if index == 1:  # the evaluation round: random picks, no model yet
                    assert result == [] and task.data["uncertainty"] is None
                    assert task.data["heatmap"].startswith("data:image/png;base64,")
                else:
                    assert task.data["uncertainty"] is not None
                    assert base64.b64decode(task.data["heatmap"].split(",", 1)[1]) == Path(heatmaps[uri]).read_bytes()
                    assert results_to_mask(result, list(SHAPE_CLASSES), height=SIZE, width=SIZE).shape == (SIZE, SIZE)
                # The annotator corrects the pre-annotation into the true mask.
                mask = truth[Path(uri).name]
                ls_client.annotations.create(id=task_id, result=mask_to_results(mask, list(SHAPE_CLASSES), scale=SCALE))
                painted[uri] = mask
            assert sync_flow(name).pending == 0

        summaries = campaign_summaries(engine, name)
        assert [s.kind for s in summaries] == ["evaluation", "active"]
        with session_scope(engine) as session:
            second = session.scalars(select(Round).where(Round.index == 2)).one()
            # Trained on the 6 seed masks, measured on the 3 masks painted for the evaluation round.
            assert second.labeled_count == 6 and second.segmentation_metrics["pixels"] == 3 * SIZE * SIZE
    finally:
        delete_projects_titled(ls_client, config.labelstudio_project)

    count = export_labels(engine, name, tmp_path / "out" / "labels.csv")
    rows = list(csv.DictReader((tmp_path / "out" / "labels.csv").open()))
    assert count.rows == 6 + 6
    exported = {}
    for row in rows:
        with Image.open(tmp_path / "out" / row["mask"]) as png:
            exported[Path(row["path"]).name] = np.asarray(png)
    for uri, mask in painted.items():
        np.testing.assert_array_equal(exported[Path(uri).name], mask)
