"""Create a campaign (samples, splits, seed labels) or find it again to continue."""

from __future__ import annotations

import logging

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from activelabel.annotation import Annotator, LabelAnswer, OracleAnnotator, TaskRequest
from activelabel.campaign.config import CampaignConfig
from activelabel.errors import ConfigError
from activelabel.pipeline.datasets import LabeledImages, load_dataset
from activelabel.storage import Campaign, SampleSplit, session_scope
from activelabel.storage.repository import (
    NewAnnotation,
    NewSample,
    add_annotations,
    add_samples,
    get_campaign,
    samples_by_uri,
)

log = logging.getLogger(__name__)


def build_annotator(config: CampaignConfig, dataset: LabeledImages) -> Annotator:
    """The campaign's annotators: the simulated oracle, or a Label Studio project.

    Label Studio's URL and key come from the environment (LABEL_STUDIO_URL,
    LABEL_STUDIO_API_KEY) at run time, never from the stored campaign settings.
    """
    if config.annotator == "labelstudio":
        from activelabel.annotation.images import (
            LocalFilesSource,
            dataset_image_source,
            url_prefix_source,
        )
        from activelabel.annotation.labelstudio import LabelStudioAnnotator

        if config.image_url_prefix:
            images = url_prefix_source(config.image_url_prefix)
        elif config.document_root:
            if dataset.root is None:
                raise ConfigError(
                    f"--document-root serves image files, but dataset {config.dataset!r} is in memory; "
                    "leave it out to embed the images"
                )
            # The project's local-files storage is the dataset folder (Label Studio refuses the root).
            images = LocalFilesSource(config.document_root, base_dir=dataset.root, storage_path=dataset.root)
            images.local_path(dataset.uris[0])  # refuse a dataset outside the root up front
        else:
            images = dataset_image_source(dataset)
        return LabelStudioAnnotator.from_env(
            project_title=config.labelstudio_project,
            labels=list(dataset.labels),
            image_source=images,
            annotations_per_task=config.annotations_per_task,
        )
    return OracleAnnotator(dataset, noise=config.annotator_noise, seed=config.seed)


def split_dataset(size: int, config: CampaignConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded (test, pool, initially labeled) row numbers; the seed set is drawn from the pool."""
    rng = np.random.default_rng([config.seed, 0])
    order = rng.permutation(size)
    n_test, n_pool, _ = _split_sizes(size, config)
    config.check_pool(n_pool)
    test, pool = np.sort(order[:n_test]), np.sort(order[n_test:])
    initial = np.sort(rng.choice(pool, size=config.initial_labeled, replace=False))
    return test, pool, initial


def prepare_campaign(engine: Engine, config: CampaignConfig) -> int:
    """The campaign's id: created with samples and seed labels, or found with the same settings.

    Everything a new campaign writes is one transaction: a failure leaves nothing behind.
    """
    with session_scope(engine) as session:
        existing = get_campaign(session, config.name)
        if existing is not None:
            config.check_compatible(CampaignConfig.from_dict(existing.config))
            # Only settings that keep the campaign's meaning can differ; take the new ones.
            existing.config = config.to_dict()
            return existing.id

    dataset = load_dataset(config.dataset)
    test, pool, initial = split_dataset(len(dataset), config)
    try:
        return _create_campaign(engine, config, dataset, test, pool, initial)
    except IntegrityError:
        # Another process created the same campaign a moment ago: use theirs.
        return prepare_campaign(engine, config)


def _create_campaign(
    engine: Engine,
    config: CampaignConfig,
    dataset: LabeledImages,
    test: np.ndarray,
    pool: np.ndarray,
    initial: np.ndarray,
) -> int:
    with session_scope(engine) as session:
        campaign = Campaign(
            name=config.name,
            labels=list(dataset.labels),
            strategy=config.strategy,
            dataset=config.dataset,
            config=config.to_dict(),
        )
        session.add(campaign)
        session.flush()
        split_of = {int(i): SampleSplit.test for i in test} | {int(i): SampleSplit.pool for i in pool}
        add_samples(
            session,
            campaign.id,
            [NewSample(dataset.uris[i], dataset.content_hash(i), split_of[i]) for i in range(len(dataset))],
        )
        uris = [dataset.uris[int(i)] for i in initial]
        ids = samples_by_uri(session, campaign.id, uris)
        # The seed set takes the dataset's own labels, whoever labels the rounds.
        answers = OracleAnnotator(dataset).pull(
            [TaskRequest(ids[u], u, rank=-1, score=0.0, predicted_label="", confidence=0.0) for u in uris]
        )
        add_annotations(session, campaign.id, [_seed_annotation(a) for a in answers])
        log.info(
            "Created campaign %r: %d pool samples (%d labeled to start), %d test samples",
            config.name, len(pool), len(initial), len(test),
        )
        return campaign.id


def _seed_annotation(answer: LabelAnswer) -> NewAnnotation:
    return NewAnnotation(
        sample_id=answer.sample_id,
        annotator=answer.annotator,
        label=answer.label,
        source=OracleAnnotator.source,
        external_id=answer.external_id,
    )


def check_dataset(config: CampaignConfig) -> None:
    """Load the dataset and check the campaign fits its pool, before anything is written."""
    dataset = load_dataset(config.dataset)
    _, pool, _ = _split_sizes(len(dataset), config)
    config.check_pool(pool)


def _split_sizes(size: int, config: CampaignConfig) -> tuple[int, int, int]:
    n_test = max(1, round(size * config.test_fraction))
    return n_test, size - n_test, config.initial_labeled


def check_annotator(config: CampaignConfig) -> None:
    """Reach the annotation backend before any round starts (fail fast on URL or token)."""
    if config.annotator != "labelstudio":
        return
    annotator = build_annotator(config, load_dataset(config.dataset))
    annotator.ensure_project()
