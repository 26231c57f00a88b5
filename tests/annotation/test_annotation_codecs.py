"""The per-kind Label Studio result codecs, without a server (the real round trip is in
tests/labelstudio/test_labelstudio_segmentation.py)."""

from __future__ import annotations

import numpy as np

from activelabel.annotation.base import MASK_LABEL, TaskRequest
from activelabel.annotation.brush import mask_to_results
from activelabel.annotation.codecs import BrushCodec, ChoicesCodec
from activelabel.campaign.export import mask_file_name
from activelabel.pipeline.masks import mask_from_png_bytes, mask_to_png_bytes

LABELS = ["background", "road", "car"]


def brush(scale: int = 4) -> BrushCodec:
    return BrushCodec(LABELS, height=6, width=8, scale=scale, encode=mask_to_png_bytes, decode=mask_from_png_bytes,
                      heatmap_value=lambda path: f"heat:{path}")


def task(**extra) -> TaskRequest:
    return TaskRequest(sample_id=1, uri="a/b.png", rank=0, score=0.5, predicted_label="", confidence=0.4, **extra)


def test_brush_codec_pre_annotates_the_predicted_mask_and_reads_a_painted_one_back() -> None:
    mask = np.zeros((6, 8), dtype=np.int64)
    mask[1:3, 2:7], mask[4, :] = 1, 2
    codec = brush()
    assert codec.project_labels == ["road", "car"] and "<BrushLabels" in codec.label_config()
    assert codec.config_labels(codec.label_config()) == ["road", "car"]
    result = codec.prediction_result(task(predicted_mask=mask_to_png_bytes(mask), heatmap="/h.png"))
    assert [(r["value"]["brushlabels"], r["original_width"], r["original_height"]) for r in result] == [
        (["road"], 32, 24), (["car"], 32, 24)]
    assert codec.prediction_result(task()) == []  # no model yet: nothing to pre-annotate
    assert codec.task_data(task(heatmap="/h.png")) == {"heatmap": "heat:/h.png"}
    assert codec.task_data(task()) == {"heatmap": "heat:None"}
    answer = codec.answer(result, "annotation 7")
    assert answer.label == MASK_LABEL and answer.error is None
    np.testing.assert_array_equal(mask_from_png_bytes(answer.mask), mask)


def test_brush_codec_returns_unusable_answers_with_the_reason() -> None:
    codec = brush()
    assert codec.empty_is_skip is False
    empty = codec.answer([], "annotation 7")
    assert empty.mask is None and empty.error == (
        "annotation 7: the annotation has no brush result (nothing painted); paint the objects with the brush, "
        "or skip the task")
    choices = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["road"]}}]
    assert "has no brush result (only choices)" in codec.answer(choices, "annotation 7").error
    unknown = mask_to_results(np.ones((6, 8), dtype=np.int64), ["background", "bike"], scale=4)
    assert "annotation 7: brush label ['bike'] is not one of ['road', 'car']" in codec.answer(unknown, "annotation 7").error
    odd = mask_to_results(np.ones((7, 8), dtype=np.int64), LABELS)
    assert "brush painted at 8x7 pixels, not a whole multiple of the 8x6 image" in codec.answer(odd, "annotation 7").error


def test_choices_codec_is_the_classification_behaviour() -> None:
    codec = ChoicesCodec(LABELS)
    assert codec.empty_is_skip and codec.project_labels == LABELS
    assert codec.config_labels(codec.label_config()) == LABELS
    pre = codec.prediction_result(TaskRequest(1, "x.png", 0, 0.2, "car", 0.8))
    assert pre == [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["car"]},
                    "score": 0.8}]
    assert codec.task_data(task()) == {}
    assert codec.answer(pre, "annotation 1").label == "car"
    assert codec.answer(pre + pre, "annotation 1").label == '["car", "car"]'  # the sync rejects it by name


def test_exported_mask_files_stay_inside_the_export_folder() -> None:
    assert mask_file_name("a/b.jpg").as_posix() == "a/b.png"
    assert mask_file_name("../../seed/images/x.JPG").as_posix() == "_parent_/_parent_/seed/images/x.png"
    assert mask_file_name("shapes/0/000012.png").as_posix() == "shapes/0/000012.png"


def test_the_documented_scripted_answer_is_what_the_classification_project_reads() -> None:
    """Trial 14 F11: docs/labelstudio.md's `annotations.create(..., result=[...])` example gives the
    exact result; it must name the label config's Choices/Image and decode to its choice."""
    import ast
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "labelstudio.md").read_text(encoding="utf-8")
    call = doc[doc.index("client.annotations.create(\n"):]
    call = call[: call.index("\n)")]
    result = ast.literal_eval(re.search(r"result=(\[.*?\}\}\])", call, re.S).group(1))
    assert "completed_by=user.id" in call
    codec = ChoicesCodec([str(d) for d in range(10)])
    config = codec.label_config()
    [item] = result
    assert f'<Choices name="{item["from_name"]}" toName="{item["to_name"]}"' in config
    assert f'<Image name="{item["to_name"]}"' in config
    assert item["type"] == "choices"
    assert codec.answer(result, "annotation 1").label == "3"
    # the same shape as the pre-annotation activelabel itself sends, less the score
    pre = codec.prediction_result(TaskRequest(1, "x.png", 0, 0.2, "3", 0.8))
    assert [{k: v for k, v in pre[0].items() if k != "score"}] == result
