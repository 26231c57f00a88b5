"""Task kinds: what differs between classification and segmentation, behind one object each.

The round (``campaign.steps``), storage and flows are shared. A kind supplies the parts that
depend on what a label is (DESIGN "Task kinds"):

========================  ==================================  =====================================
                          :class:`ClassificationKind`         :class:`SegmentationKind`
========================  ==================================  =====================================
label                     a class name                        a mask (``annotation.mask``, PNG)
model                     ``pipeline.model`` (CNNs)           ``pipeline.segmentation_model`` (U-Net)
loss                      cross-entropy per image             per-pixel cross-entropy, ``ignore_index``
yardstick metrics         accuracy, NLL, ECE, calibration     mIoU, per-class IoU, pixel acc., pixel ECE
per-sample score row      the strategy on ``[T, n, C]``       a per-pixel map aggregated per image
after selection           nothing                             heatmap PNGs and predicted masks of the tasks
simulated annotator       answers the class                   answers the mask
Label Studio              ``Choices``, the predicted class    ``BrushLabels`` + heatmap, brush RLE
========================  ==================================  =====================================

A campaign picks its kind with ``task`` in its settings (``CampaignConfig.task``; stored
campaigns without it are classification). The classification kind calls the code that was
always in ``campaign.steps``, unchanged; the segmentation kind's code is in
:mod:`activelabel.campaign.segmentation_round`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Engine

from activelabel.annotation import Annotator, OracleAnnotator
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import CampaignData


@dataclass
class TrainInput:
    """What ``train_step`` hands a kind: the round, the campaign's settings and data, the
    labeled pool samples (readable, not copies) with their resolved labels, the yardstick's
    URIs and labels, the round's seed and device."""

    engine: Engine
    rnd: object  # storage.Round
    campaign: object  # storage.Campaign
    config: CampaignConfig
    data: CampaignData
    labeled: list  # storage.Sample
    labels: dict  # sample id -> ResolvedLabel
    yard_uris: list[str]
    yard_labels: list[str]
    seed: int
    device: object  # torch.device


@dataclass
class Trained:
    """What a kind's training gives ``train_step`` to store: the models (one per ensemble
    member), the architecture dict stored with each checkpoint, the labels trained on, the
    round's measured columns (``round_values``, passed to ``move_round``), unreadable files
    met, the log line, and the seconds of it spent measuring the models on the yardstick and
    fitting their temperature (stored as the round's ``evaluate`` timing, apart from ``train``)."""

    models: list
    architecture: dict
    labeled_count: int
    round_values: dict
    problems: list = field(default_factory=list)
    log_level: int = logging.INFO
    message: str = ""
    evaluate_seconds: float = 0.0


@dataclass
class PreparedTasks:
    """What ``push_step`` sends and stores: the tasks (a kind may add what annotators see, e.g.
    the predicted mask and heatmap) and the ``heatmap`` rows of files written for them."""

    tasks: list  # annotation.TaskRequest
    heatmap_rows: list[dict] = field(default_factory=list)


class TaskKind(Protocol):
    name: str

    def train(self, job: TrainInput) -> Trained:
        """Train the round's model(s) on the labeled pool and measure them on the yardstick."""
        ...

    def score_pool(self, rnd, campaign, config: CampaignConfig, checkpoints, pool, problems, *,
                   batch_size: int, selectable: int, labeled: list, seed: int, run_shards=None):
        """Score ``pool`` chunk by chunk; returns ``steps.ScoredPool`` (score columns or rows,
        mean entropy, how it was scored, a batch plan). ``run_shards``: score as shards there
        (a ``campaign.shards.ShardRunner``); a kind that cannot raises ConfigError."""
        ...

    def prepare_tasks(self, engine: Engine, rnd, campaign, config: CampaignConfig, tasks: list,
                      seed: int) -> PreparedTasks:
        """The tasks as they leave (the round's selection and leftovers), and files written for them."""
        ...

    def labelstudio_parts(self, config: CampaignConfig, data: CampaignData) -> tuple:
        """``(image source or None, result codec)`` of a Label Studio annotator; None: the
        image source the settings ask for (embedded, URL prefix or document root)."""
        ...

    def truth_mask(self, data: CampaignData, uri: str) -> bytes | None:
        """A given or true label's mask (PNG bytes) for ``uri``; None where labels are classes."""
        ...

    def simulated_annotator(self, config: CampaignConfig, data: CampaignData) -> Annotator:
        """The simulated annotator answering from ``data.truth`` (or the true masks)."""
        ...

    def answer_labels(self, labels: list[str]) -> set[str]:
        """Labels an answer may carry to be accepted."""
        ...


class ClassificationKind:
    """One class per image: the behaviour of ``campaign.steps`` before task kinds existed."""

    name = "classification"

    def train(self, job: TrainInput) -> Trained:
        from activelabel.campaign import steps

        return steps.train_classifier(job)

    def score_pool(self, rnd, campaign, config, checkpoints, pool, problems, *, batch_size, selectable, labeled,
                   seed, run_shards=None):
        from activelabel.campaign import steps

        return steps._score_pool(rnd, campaign, config, checkpoints, pool, problems, batch_size=batch_size,
                                 selectable=selectable, labeled=labeled, run_shards=run_shards)

    def prepare_tasks(self, engine, rnd, campaign, config, tasks, seed) -> PreparedTasks:
        return PreparedTasks(tasks, [])

    def labelstudio_parts(self, config, data) -> tuple:
        from activelabel.annotation.codecs import ChoicesCodec

        return None, ChoicesCodec(data.labels)

    def truth_mask(self, data, uri) -> bytes | None:
        return None

    def simulated_annotator(self, config, data) -> Annotator:
        return OracleAnnotator(data.truth, noise=config.annotator_noise, seed=config.seed,
                              annotators=config.annotations_per_task)

    def answer_labels(self, labels) -> set[str]:
        return set(labels)


class SegmentationKind:
    """One class per pixel: labels are masks, the model a U-Net, image scores aggregate maps."""

    name = "segmentation"

    def train(self, job: TrainInput) -> Trained:
        from activelabel.campaign.segmentation_round import train_segmenter

        return train_segmenter(job)

    def score_pool(self, rnd, campaign, config, checkpoints, pool, problems, *, batch_size, selectable, labeled,
                   seed, run_shards=None):
        from activelabel.campaign.segmentation_round import score_pool_pixelwise

        if run_shards is not None:
            from activelabel.errors import ConfigError

            raise ConfigError("segmentation campaigns score in one process: run them without "
                              "--dask-address / --dask-workers (Dask scores classification pools)")

        return score_pool_pixelwise(rnd, config, checkpoints, pool, problems, seed=seed)

    def prepare_tasks(self, engine, rnd, campaign, config, tasks, seed) -> PreparedTasks:
        from activelabel.campaign.segmentation_round import prepare_tasks

        return prepare_tasks(engine, rnd, campaign, config, tasks, seed=seed)

    def labelstudio_parts(self, config, data) -> tuple:
        from activelabel.campaign.segmentation_round import labelstudio_parts

        return labelstudio_parts(config, data)

    def truth_mask(self, data, uri) -> bytes | None:
        from activelabel.pipeline.masks import mask_to_png_bytes

        for masks in (data.given_masks, data.truth_masks):
            if masks is not None and uri in masks:
                return mask_to_png_bytes(masks[uri])
        return None

    def simulated_annotator(self, config, data) -> Annotator:
        from activelabel.annotation.simulated import MaskOracleAnnotator
        from activelabel.errors import ConfigError

        def truth(uri: str) -> bytes:
            mask = self.truth_mask(data, uri)
            if mask is None:
                from activelabel.pipeline.masks import mask_path_for

                where = (f" ({mask_path_for(uri, data.truth_masks.folder)} is missing)"
                         if data.truth_masks is not None else "")
                raise ConfigError(f"sample {uri!r} has no true mask for the simulated annotator{where}; add it to "
                                  "the annotator.truth folder (same relative path as the image, suffix .png)")
            return mask

        return MaskOracleAnnotator(truth)

    def answer_labels(self, labels) -> set[str]:
        from activelabel.annotation.base import MASK_LABEL

        return {MASK_LABEL}


_KINDS: dict[str, TaskKind] = {"classification": ClassificationKind(), "segmentation": SegmentationKind()}


def task_kind(config: CampaignConfig) -> TaskKind:
    """The kind of the campaign's ``task`` (validated by ``CampaignConfig``)."""
    return _KINDS[config.task]
