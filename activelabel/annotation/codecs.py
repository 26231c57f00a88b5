"""What a Label Studio task and its results look like, per task kind: one *result codec* each.

:class:`~activelabel.annotation.labelstudio.LabelStudioAnnotator` creates the project, pushes
tasks and pulls annotations the same way for every kind; the codec says what differs:

====================  ==================================  ======================================
                      :class:`ChoicesCodec`               :class:`BrushCodec`
====================  ==================================  ======================================
labeling config       Image + single ``Choices``          ``BrushLabels`` + the heatmap image
pre-annotation        the predicted class                 the predicted mask as brush RLE
extra task data       none                                ``heatmap``: the uncertainty map
an answer             the chosen class                    a mask (PNG bytes), label ``<mask>``
====================  ==================================  ======================================

Answers that cannot be used are not raised: :meth:`answer` returns them with an ``error``
text, and the sync stores them as rejected with that reason (naming the task and sample).
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from xml.sax.saxutils import quoteattr

import numpy as np

from activelabel.annotation.base import MASK_LABEL, TaskRequest

FROM_NAME = "label"
TO_NAME = "image"


@dataclass(frozen=True)
class DecodedAnswer:
    """An annotation's result as the campaign stores it: ``label``, ``mask`` (segmentation:
    PNG bytes) and ``error`` (why it cannot be used; None when it can)."""

    label: str
    mask: bytes | None = None
    error: str | None = None


class ResultCodec(Protocol):
    #: The labels the project's config must offer (a found project with others is refused).
    project_labels: list[str]
    #: A submitted annotation with an empty result is a skip (classification) or an error.
    empty_is_skip: bool

    def label_config(self) -> str:
        """The labeling config of a new project."""
        ...

    def config_labels(self, label_config: str) -> list[str]:
        """The labels an existing project's config offers (compared with ``project_labels``)."""
        ...

    def prediction_result(self, task: TaskRequest) -> list[dict]:
        """The pre-annotation's ``result`` for a task (may be empty)."""
        ...

    def task_data(self, task: TaskRequest) -> dict:
        """Extra ``data`` fields of a task beside ``image`` and the activelabel fields."""
        ...

    def answer(self, result: list, where: str) -> DecodedAnswer:
        """What an annotation's ``result`` says; ``where`` names the task in error texts."""
        ...


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """A field of an SDK object or a plain dict (task lists return annotations as dicts)."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _finite(value: float) -> float | None:
    """``value`` as a float, None for NaN or infinity (JSON has neither)."""
    value = float(value)
    return value if math.isfinite(value) else None


def build_label_config(labels: list[str]) -> str:
    """An Image + single-choice labeling config for ``labels`` (values XML-escaped)."""
    choices = "\n    ".join(f"<Choice value={quoteattr(label)}/>" for label in labels)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" showInline="true" required="true">\n'
        f"    {choices}\n"
        "  </Choices>\n"
        "</View>"
    )


def _tag_values(label_config: str, tag: str) -> list[str]:
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError:
        return []
    return [c.get("value", "") for c in root.iter(tag)]


def config_labels(label_config: str) -> list[str]:
    """The Choice values of a labeling config (empty when it cannot be parsed)."""
    return _tag_values(label_config, "Choice")


def label_of(result: list) -> str:
    """The one chosen label, or the raw text of what was found when it is not exactly one."""
    choices: list = []
    malformed = False
    for item in result:
        value = _get(item, "value")
        found = _get(value, "choices") if value is not None else None
        if _get(item, "type") == "choices" and isinstance(found, list):
            choices.extend(found)
        else:
            malformed = True
    if not malformed and len(choices) == 1 and isinstance(choices[0], str):
        return choices[0]
    raw = json.dumps(choices if choices and not malformed else result, sort_keys=True, default=str)
    return raw if len(raw) <= 200 else raw[:197] + "..."


class ChoicesCodec:
    """Classification: one class per image, chosen from ``labels``."""

    empty_is_skip = True

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.project_labels = self.labels

    def label_config(self) -> str:
        return build_label_config(self.labels)

    def config_labels(self, label_config: str) -> list[str]:
        return config_labels(label_config)

    def prediction_result(self, task: TaskRequest) -> list[dict]:
        if not task.predicted_label:
            return []
        return [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                 "value": {"choices": [task.predicted_label]}, "score": _finite(task.confidence)}]

    def task_data(self, task: TaskRequest) -> dict:
        return {}

    def answer(self, result: list, where: str) -> DecodedAnswer:
        # A label outside the label set comes back as text; the sync rejects it by name.
        return DecodedAnswer(label_of(result))


class BrushCodec:
    """Segmentation: a mask per image, painted with ``BrushLabels`` beside the model's heatmap.

    ``height x width`` is the training size of the masks; the image is shown ``scale`` times
    larger, and pre-annotations are encoded at that size (:mod:`activelabel.annotation.brush`).
    With ``displayed_size`` (served images: ``uri -> (height, width)`` of the file as shown),
    each pre-annotation is encoded at its image's natural size instead, and a painted mask is
    kept at the size it was painted (the training step resizes it).
    ``encode``/``decode`` turn a mask ``[H, W]`` into PNG bytes and back (the campaign's
    storage format); ``heatmap_value`` turns a task's heatmap path (None: no heatmap yet, e.g.
    a random cold-start pick) into the value of ``$heatmap``.
    """

    empty_is_skip = False

    def __init__(
        self,
        labels: Sequence[str],
        *,
        height: int,
        width: int,
        scale: int,
        encode: Callable[[np.ndarray], bytes],
        decode: Callable[[bytes], np.ndarray],
        heatmap_value: Callable[[str | None], str],
        displayed_size: Callable[[str], tuple[int, int]] | None = None,
    ) -> None:
        self.labels = list(labels)
        self.project_labels = self.labels[1:]
        self.height, self.width, self.scale = int(height), int(width), int(scale)
        self.encode, self.decode, self.heatmap_value = encode, decode, heatmap_value
        self.displayed_size = displayed_size

    def label_config(self) -> str:
        from activelabel.annotation.brush import build_brush_config

        return build_brush_config(self.labels)

    def config_labels(self, label_config: str) -> list[str]:
        return _tag_values(label_config, "Label")

    def prediction_result(self, task: TaskRequest) -> list[dict]:
        from activelabel.annotation.brush import mask_to_results

        if task.predicted_mask is None:
            return []
        size = self.displayed_size(task.uri) if self.displayed_size is not None else None
        return mask_to_results(self.decode(task.predicted_mask), self.labels, scale=self.scale, size=size)

    def task_data(self, task: TaskRequest) -> dict:
        return {"heatmap": self.heatmap_value(task.heatmap)}

    def answer(self, result: list, where: str) -> DecodedAnswer:
        from activelabel.annotation.brush import BRUSH_FROM_NAME, BrushResultError, results_to_mask

        if not isinstance(result, list):
            return DecodedAnswer(MASK_LABEL, error=f"{where}: the annotation's result is not a list of regions")
        brushes = [r for r in result if str(_get(r, "type", "")).lower() == "brushlabels"
                   and _get(r, "from_name") == BRUSH_FROM_NAME]
        if not brushes:
            found = sorted({str(_get(r, "type")) for r in result})
            return DecodedAnswer(MASK_LABEL, error=(
                f"{where}: the annotation has no brush result"
                + (f" (only {', '.join(found)})" if found else " (nothing painted)")
                + "; paint the objects with the brush, or skip the task"
            ))
        try:
            mask = results_to_mask(brushes, self.labels, height=self.height, width=self.width, where=where,
                                   keep_size=self.displayed_size is not None)
        except BrushResultError as error:
            return DecodedAnswer(MASK_LABEL, error=str(error))
        return DecodedAnswer(MASK_LABEL, mask=self.encode(mask))
