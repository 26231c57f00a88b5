"""A simulated annotator: it answers from a *truth* table, for simulations and benchmarks.

The truth is a mapping sample URI -> label: a built-in dataset's own labels, or the manifest
named by ``annotator.truth`` for a simulation on your own images. ``noise`` > 0 makes it answer a
uniformly wrong label with that probability, seeded per sample so answers do not depend on the
order they are asked in. ``annotators`` > 1 (the campaign's ``annotations_per_task``) makes it
answer each task that many times under distinct names (``oracle-1``, ``oracle-2``, ...), each
with its own noise draw: the campaign resolves their majority, one vote per annotator, as it does
for people in Label Studio.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from activelabel.annotation.base import MASK_LABEL, LabelAnswer, TaskRequest
from activelabel.errors import ConfigError


@dataclass(frozen=True)
class Truth:
    """The labels a simulated annotator answers with, by sample URI (in a fixed order)."""

    labels: tuple[str, ...]
    by_uri: dict[str, str]
    _row: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._row.update({uri: i for i, uri in enumerate(self.by_uri)})

    def label(self, uri: str) -> str:
        """The true label (raises ConfigError naming the sample when the truth lacks it)."""
        try:
            return self.by_uri[uri]
        except KeyError:
            raise ConfigError(
                f"sample {uri!r} has no true label in the simulated annotator's truth; add it to "
                "the annotator.truth manifest"
            ) from None

    def row(self, uri: str) -> int:
        return self._row[uri]


class OracleAnnotator:
    """Answers from ``truth``; ``noise``: probability of a uniformly wrong label per answer;
    ``annotators``: answers per task, each stored under its own name (``self.names``): one
    annotator is named ``oracle`` (``oracle-noise0.1`` with noise), several ``oracle-1``... ."""

    source = "simulated"

    def __init__(self, truth: Truth, *, noise: float = 0.0, seed: int = 0, annotators: int = 1) -> None:
        if not 0.0 <= noise < 1.0:
            raise ValueError(f"oracle noise must be in [0, 1), got {noise}")
        if annotators < 1:
            raise ValueError(f"simulated annotators must be at least 1, got {annotators}")
        self.truth = truth
        self.noise = noise
        self.seed = seed
        self.name = "oracle" if noise == 0 else f"oracle-noise{noise:g}"
        self.names = [self.name] if annotators == 1 else [f"{self.name}-{k + 1}" for k in range(annotators)]

    def push(
        self, tasks: list[TaskRequest], model_version: str | None = None, *, round_index: int | None = None
    ) -> dict[int, str]:
        return {t.sample_id: f"sim-task-{t.sample_id}" for t in tasks}

    def pull(self, tasks: list[TaskRequest], *, round_index: int | None = None) -> list[LabelAnswer]:
        # The first annotator's answers and ids are those of a single oracle (same noise draw).
        return [LabelAnswer(t.sample_id, name, self._answer(t.uri, k),
                            f"sim-{t.sample_id}" if k == 0 else f"sim-{t.sample_id}-{k + 1}")
                for t in tasks for k, name in enumerate(self.names)]

    def _answer(self, uri: str, annotator: int = 0) -> str:
        truth = self.truth.label(uri)
        if self.noise > 0:
            labels = self.truth.labels
            key = [self.seed, self.truth.row(uri)] + ([annotator] if annotator else [])
            rng = np.random.default_rng(key)
            if rng.random() < self.noise:
                wrong = [label for label in labels if label != truth]
                return wrong[int(rng.choice(len(wrong)))]
        return truth


class MaskOracleAnnotator:
    """A simulated segmentation annotator: answers each task with the sample's true mask.

    ``truth(uri)`` gives the mask as PNG bytes (one class index per pixel; see
    ``pipeline.masks.mask_to_png_bytes``), so this module needs no image code. The answer's
    label is :data:`~activelabel.annotation.base.MASK_LABEL`: the mask is the label.
    """

    source = "simulated"
    name = "oracle"

    def __init__(self, truth) -> None:
        self.truth = truth

    def push(
        self, tasks: list[TaskRequest], model_version: str | None = None, *, round_index: int | None = None
    ) -> dict[int, str]:
        return {t.sample_id: f"sim-task-{t.sample_id}" for t in tasks}

    def pull(self, tasks: list[TaskRequest], *, round_index: int | None = None) -> list[LabelAnswer]:
        return [LabelAnswer(t.sample_id, self.name, MASK_LABEL, f"sim-{t.sample_id}", mask=self.truth(t.uri))
                for t in tasks]
