"""Who labels: one small protocol for simulated annotators and Label Studio alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class TaskRequest:
    """A selected sample as it leaves for annotation."""

    sample_id: int
    uri: str
    rank: int
    score: float
    predicted_label: str
    confidence: float
    external_task_id: str | None = None
    # Segmentation: this round's predicted mask (PNG bytes, one class index per pixel), the
    # pre-annotation annotators start from, and the path of the sample's heatmap PNG.
    predicted_mask: bytes | None = None
    heatmap: str | None = None


@dataclass(frozen=True)
class LabelAnswer:
    """One annotator's answer for one sample, keyed by the backend's own id."""

    sample_id: int
    annotator: str
    label: str
    external_id: str
    # Segmentation: the painted mask as PNG bytes (``label`` is then ``MASK_LABEL``).
    mask: bytes | None = None
    # Why the answer cannot be used (e.g. a brush result that does not decode); the sync stores
    # it as rejected with this reason, naming the task and the sample.
    error: str | None = None
    # The annotator skipped the task (Label Studio: ``was_cancelled``, or an empty result where
    # the codec reads it as a skip); ``label`` is then "". Stored as a skip, never as a vote.
    skipped: bool = False


#: The ``label`` of an answer whose content is a mask (segmentation): the mask is the label.
MASK_LABEL = "<mask>"


class Annotator(Protocol):
    source: str

    def push(
        self, tasks: list[TaskRequest], model_version: str | None = None, *, round_index: int | None = None
    ) -> dict[int, str]:
        """Hand tasks to annotators; returns ``sample_id -> external task id``. Idempotent."""
        ...

    def pull(self, tasks: list[TaskRequest], *, round_index: int | None = None) -> list[LabelAnswer]:
        """Answers available now for these tasks (may be fewer than asked; may repeat)."""
        ...
