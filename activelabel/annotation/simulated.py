"""A simulated annotator for campaigns on fully labeled data: it answers with the true label.

``noise`` > 0 makes it answer a uniformly wrong label with that probability, seeded per sample
so answers do not depend on the order they are asked in.
"""

from __future__ import annotations

import numpy as np

from activelabel.annotation.base import LabelAnswer, TaskRequest
from activelabel.pipeline.datasets import LabeledImages


class OracleAnnotator:
    source = "simulated"

    def __init__(self, dataset: LabeledImages, *, noise: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= noise < 1.0:
            raise ValueError(f"oracle noise must be in [0, 1), got {noise}")
        self.dataset = dataset
        self.noise = noise
        self.seed = seed
        self.name = "oracle" if noise == 0 else f"oracle-noise{noise:g}"

    def push(
        self, tasks: list[TaskRequest], model_version: str | None = None, *, round_index: int | None = None
    ) -> dict[int, str]:
        return {t.sample_id: f"sim-task-{t.sample_id}" for t in tasks}

    def pull(self, tasks: list[TaskRequest], *, round_index: int | None = None) -> list[LabelAnswer]:
        rows = self.dataset.indices_of([t.uri for t in tasks])
        return [
            LabelAnswer(t.sample_id, self.name, self._answer(int(row)), f"sim-{t.sample_id}")
            for t, row in zip(tasks, rows)
        ]

    def _answer(self, row: int) -> str:
        labels = self.dataset.labels
        truth = int(self.dataset.targets[row])
        if self.noise > 0:
            rng = np.random.default_rng([self.seed, row])
            if rng.random() < self.noise:
                wrong = [i for i in range(len(labels)) if i != truth]
                return labels[int(rng.choice(wrong))]
        return labels[truth]
