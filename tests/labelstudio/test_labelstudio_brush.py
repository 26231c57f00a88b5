"""Brush masks through a real Label Studio: mask -> pre-annotation -> Label Studio -> annotation -> mask."""

from __future__ import annotations

import numpy as np
import pytest

from activelabel.annotation.brush import build_brush_config, mask_to_results, results_to_mask
from activelabel.annotation.images import png_data_uri
from activelabel.annotation.mask_votes import majority_mask, mean_pairwise_iou
from activelabel.pipeline.shapes import SHAPE_CLASSES, make_shapes

from tests_support_lsserver import delete_project

pytestmark = pytest.mark.labelstudio
LABELS = list(SHAPE_CLASSES)


@pytest.fixture
def brush_project(ls_client, project_title):
    project = ls_client.projects.create(title=project_title, label_config=build_brush_config(LABELS), model_version="seg-r1")
    yield project
    delete_project(ls_client, project.id)


@pytest.mark.parametrize("scale", [1, 3])
def test_mask_round_trip_through_label_studio(ls_client, brush_project, scale: int) -> None:
    data = make_shapes(3, seed=5, size=32)
    masks = data.masks.copy()
    masks[2, ::2, ::3] = 3  # a speckled mask: many short runs
    tasks = [
        {
            "data": {
                "image": png_data_uri(image, scale=scale),
                "heatmap": png_data_uri(np.full((1, 32, 32), 0.5), scale=scale),
                "sample_id": i,
            },
            "predictions": [{"model_version": "seg-r1", "score": 0.5, "result": mask_to_results(mask, LABELS, scale=scale)}],
        }
        for i, (image, mask) in enumerate(zip(data.images, masks))
    ]
    imported = ls_client.projects.import_tasks(id=brush_project.id, request=tasks, return_task_ids=True)
    assert len(imported.task_ids) == 3
    for task_id in imported.task_ids:
        task = ls_client.tasks.get(id=task_id)
        prediction = task.predictions[0]
        result = prediction["result"] if isinstance(prediction, dict) else prediction.result
        ls_client.annotations.create(id=task_id, result=result, lead_time=1.0)
    for task_id in imported.task_ids:
        task = ls_client.tasks.get(id=task_id)
        sample = int(task.data["sample_id"])
        annotations = list(ls_client.annotations.list(id=task_id))
        assert len(annotations) == 1
        got = results_to_mask(annotations[0].result, LABELS, height=32, width=32, where=f"task {task_id}")
        np.testing.assert_array_equal(got, masks[sample])
        assert {r["value"]["brushlabels"][0] for r in annotations[0].result} == {LABELS[c] for c in np.unique(masks[sample]) if c}


def test_several_annotators_resolved_by_majority(ls_client, brush_project) -> None:
    mask = make_shapes(1, seed=6, size=32).masks[0]
    variants = [mask.copy(), mask.copy(), mask.copy()]
    variants[1][:4] = 1  # annotator 2 paints a strip of disc at the top
    variants[2][-4:] = 2  # annotator 3 paints a strip of square at the bottom
    imported = ls_client.projects.import_tasks(
        id=brush_project.id, request=[{"data": {"image": png_data_uri(np.zeros((1, 32, 32))), "heatmap": png_data_uri(np.zeros((1, 32, 32))), "sample_id": 0}}],
        return_task_ids=True,
    )
    task_id = imported.task_ids[0]
    for variant in variants:
        ls_client.annotations.create(id=task_id, result=mask_to_results(variant, LABELS), lead_time=1.0)
    pulled = [results_to_mask(a.result, LABELS, height=32, width=32) for a in ls_client.annotations.list(id=task_id)]
    assert len(pulled) == 3
    np.testing.assert_array_equal(majority_mask(pulled, len(LABELS)), mask)
    agreement = mean_pairwise_iou(pulled, len(LABELS))
    assert 0.3 < agreement < 1.0
    assert agreement == pytest.approx(mean_pairwise_iou(variants, len(LABELS)))
