"""The steps of one round, each a plain function over the database (Prefect wraps them).

Each step reads what it needs, does its work outside any transaction, then commits its output
together with the round's move to the next status. A step called on a round that is past it
does nothing, so rerunning a round after a crash resumes where it stopped and writes nothing
twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from activelabel.acquisition import confidence, get_strategy, predicted_class, select_top_k
from activelabel.annotation import TaskRequest
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.faults import crash_point
from activelabel.campaign.setup import build_annotator
from activelabel.errors import CampaignStateError, RoundAlreadyRunningError
from activelabel.pipeline.checkpoint import load_model, serialize_weights, weights_digest
from activelabel.pipeline.datasets import load_dataset
from activelabel.pipeline.device import resolve_device, use_cpu_threads
from activelabel.pipeline.metrics import evaluate
from activelabel.pipeline.model import ModelSpec
from activelabel.pipeline.prediction import predict_probabilities
from activelabel.pipeline.training import TrainingConfig, planned_epochs, train_model
from activelabel.progress import reporter
from activelabel.storage import (
    Campaign,
    ModelCheckpoint,
    Round,
    RoundStatus,
    SampleSplit,
    Selection,
    session_scope,
)
from activelabel.storage.bulk import write_scores
from activelabel.storage.repository import (
    latest_round,
    move_round,
    outstanding_samples,
    resolved_labels,
    round_scores,
    round_selections,
    selected_sample_ids,
    split_samples,
    unlabeled_pool,
)

log = logging.getLogger(__name__)


def _load(engine: Engine, round_id: int) -> tuple[Round, Campaign, CampaignConfig]:
    with session_scope(engine) as session:
        rnd = session.get(Round, round_id)
        if rnd is None:
            raise CampaignStateError(f"round id {round_id} does not exist")
        campaign = session.get(Campaign, rnd.campaign_id)
        assert campaign is not None
        config = CampaignConfig.from_dict(campaign.config)
    use_cpu_threads(config.cpu_threads)
    return rnd, campaign, config


def _seed(config: CampaignConfig, rnd: Round) -> int:
    return config.seed * 1_000_003 + rnd.index


def _timings(rnd: Round, step: str, started: float) -> dict:
    return {**(rnd.timings or {}), step: round(time.perf_counter() - started, 4)}


def start_round(engine: Engine, campaign_id: int) -> int:
    """The round to work on: the unfinished one (a failed one is reopened), else a new one."""
    with session_scope(engine) as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        last = latest_round(session, campaign_id)
        if last is not None and last.status != RoundStatus.complete:
            if last.status == RoundStatus.failed:
                resume_at = last.failed_step or RoundStatus.training
                log.info("Resuming round %d of %r at step %s", last.index, campaign.name, resume_at.value)
                move_round(session, last.id, RoundStatus.failed, resume_at, error=None, failed_step=None)
            return last.id
        index = 1 if last is None else last.index + 1
        rnd = Round(campaign_id=campaign_id, index=index, strategy=campaign.strategy, timings={})
        session.add(rnd)
        try:
            session.flush()
        except IntegrityError:
            raise RoundAlreadyRunningError(
                f"round {index} of campaign {campaign.name!r} is already running"
            ) from None
        return rnd.id


def mark_failed(engine: Engine, round_id: int, error: BaseException) -> None:
    """Record where and why a round stopped; ``start_round`` resumes it at that step."""
    with session_scope(engine) as session:
        rnd = session.get(Round, round_id)
        if rnd is None or rnd.status in (RoundStatus.complete, RoundStatus.failed):
            return
        rnd.failed_step = rnd.status
        rnd.status = RoundStatus.failed
        rnd.error = f"{type(error).__name__}: {error}"[:4000]


def note_error(engine: Engine, round_id: int, error: BaseException) -> None:
    """Record why a round is waiting (e.g. Label Studio down) without moving it anywhere."""
    with session_scope(engine) as session:
        rnd = session.get(Round, round_id)
        if rnd is not None:
            rnd.error = f"{type(error).__name__}: {error}"[:4000]


def train_step(engine: Engine, round_id: int) -> None:
    """Train on every resolved label, evaluate on the test split, store weights and metrics."""
    rnd, campaign, config = _load(engine, round_id)
    if rnd.status != RoundStatus.training:
        return
    started = time.perf_counter()
    with session_scope(engine) as session:
        labels = resolved_labels(session, campaign.id, config.annotations_per_task)
        pool = split_samples(session, campaign.id, SampleSplit.pool)
        test = split_samples(session, campaign.id, SampleSplit.test)
    labeled = [s for s in pool if s.id in labels]
    dataset = load_dataset(campaign.dataset)
    class_of = {name: i for i, name in enumerate(campaign.labels)}
    x = dataset.images[dataset.indices_of([s.uri for s in labeled])]
    y = np.array([class_of[labels[s.id].label] for s in labeled], dtype=np.int64)
    spec = ModelSpec(in_channels=dataset.images.shape[1], num_classes=len(campaign.labels))
    training = TrainingConfig(epochs=config.epochs)
    device = resolve_device(config.device)
    progress = reporter()
    progress.phase(
        f"round {rnd.index} · training on {len(labeled)} labels", planned_epochs(len(labeled), training)
    )
    model = train_model(
        x, y, spec, training, seed=_seed(config, rnd), device=device,
        on_epoch=lambda epoch, _epochs, _loss: progress.advance(epoch),
    )
    test_rows = dataset.indices_of([s.uri for s in test])
    probs = predict_probabilities(model, dataset.images[test_rows], samples=0, device=device, seed=0)
    metrics = evaluate(probs[0], dataset.targets[test_rows])
    version = f"r{rnd.index}-{weights_digest(model)[:12]}"
    crash_point("train", rnd.index)
    with session_scope(engine) as session:
        moved = move_round(
            session, round_id, RoundStatus.training, RoundStatus.scoring,
            model_version=version, labeled_count=len(labeled),
            test_accuracy=metrics.accuracy, test_nll=metrics.nll, test_ece=metrics.ece,
            timings=_timings(rnd, "train", started),
        )
        if moved:
            session.add(ModelCheckpoint(
                round_id=round_id, version=version, architecture=spec.to_dict(),
                state=serialize_weights(model),
            ))
    log.info(
        "Round %d: trained on %d labels, test accuracy %.3f (NLL %.3f, ECE %.3f)",
        rnd.index, len(labeled), metrics.accuracy, metrics.nll, metrics.ece,
    )


def score_step(engine: Engine, round_id: int) -> None:
    """Score every unlabeled pool sample with the campaign's strategy; one bulk write."""
    rnd, campaign, config = _load(engine, round_id)
    if rnd.status != RoundStatus.scoring:
        return
    started = time.perf_counter()
    with session_scope(engine) as session:
        checkpoint = session.scalar(select(ModelCheckpoint).where(ModelCheckpoint.round_id == round_id))
        pool = unlabeled_pool(session, campaign.id)
        # Still out with annotators from earlier rounds: scored too (as this round's scores, never
        # selected again) so push gives their tasks this round's prediction and place in the order.
        leftovers = outstanding_samples(session, campaign.id, config.annotations_per_task)
    pool_count = len(pool)
    pool = pool + leftovers
    assert checkpoint is not None
    dataset = load_dataset(campaign.dataset)
    device = resolve_device(config.device)
    model = load_model(ModelSpec.from_dict(checkpoint.architecture), checkpoint.state, device)
    progress = reporter()
    progress.phase(f"round {rnd.index} · scoring {len(pool)} pool samples × {config.mc_samples} passes", len(pool))
    rows = dataset.indices_of([s.uri for s in pool])
    probs = predict_probabilities(
        model, dataset.images[rows], samples=config.mc_samples, device=device,
        seed=_seed(config, rnd), on_batch=lambda done, _total: progress.advance(done),
    )
    strategy = get_strategy(rnd.strategy)
    values = strategy.score(probs, rng=np.random.default_rng(_seed(config, rnd)))
    predicted, conf = predicted_class(probs), confidence(probs)
    score_rows = [
        (round_id, s.id, strategy.name, float(v), int(c), float(p))
        for s, v, c, p in zip(pool, values, predicted, conf)
    ]
    crash_point("score", rnd.index)
    with session_scope(engine) as session:
        if move_round(session, round_id, RoundStatus.scoring, RoundStatus.selecting,
                      pool_count=pool_count, timings=_timings(rnd, "score", started)):
            write_scores(session, score_rows)


def select_step(engine: Engine, round_id: int) -> None:
    """Keep the batch_size highest scores (ties: lower sample id first) as this round's selection."""
    rnd, campaign, config = _load(engine, round_id)
    if rnd.status != RoundStatus.selecting:
        return
    started = time.perf_counter()
    reporter().phase(f"round {rnd.index} · selecting {config.batch_size}", total=1)
    with session_scope(engine) as session:
        taken = selected_sample_ids(session, campaign.id)  # earlier rounds' leftovers were scored too
        scores = [s for s in round_scores(session, round_id, rnd.strategy) if s.sample_id not in taken]
        chosen = select_top_k(np.array([s.value for s in scores], dtype=np.float64), config.batch_size)
        picked = [scores[int(i)] for i in chosen]
        mean_score = float(np.mean([s.value for s in picked]))
        crash_point("select", rnd.index)
        if move_round(session, round_id, RoundStatus.selecting, RoundStatus.pushing,
                      mean_selected_score=mean_score, timings=_timings(rnd, "select", started)):
            session.add_all(
                Selection(
                    campaign_id=campaign.id, round_id=round_id, sample_id=s.sample_id, rank=rank,
                    score=s.value, predicted_label=campaign.labels[s.predicted_class],
                    confidence=s.confidence,
                )
                for rank, s in enumerate(picked)
            )


def _task_requests(engine: Engine, where) -> list[TaskRequest]:
    from activelabel.storage import Sample

    with session_scope(engine) as session:
        rows = session.execute(
            select(Selection, Sample.uri).join(Sample, Sample.id == Selection.sample_id)
            .where(where).order_by(Selection.round_id, Selection.rank)
        ).all()
        return [
            TaskRequest(s.sample_id, uri, s.rank, s.score, s.predicted_label, s.confidence,
                        s.external_task_id)
            for s, uri in rows
        ]


def _leftover_requests(engine: Engine, rnd: Round, campaign: Campaign, config: CampaignConfig) -> list[TaskRequest]:
    """Earlier rounds' samples still out with annotators, with this round's scores and prediction."""
    from activelabel.storage import Sample, Score

    with session_scope(engine) as session:
        waiting = {s.id for s in outstanding_samples(session, campaign.id, config.annotations_per_task)}
        rows = session.execute(
            select(Selection, Sample.uri, Score).join(Sample, Sample.id == Selection.sample_id)
            .join(Score, (Score.sample_id == Selection.sample_id) & (Score.round_id == rnd.id)
                  & (Score.strategy == rnd.strategy))
            .where(Selection.campaign_id == campaign.id, Selection.round_id != rnd.id,
                   Selection.external_task_id.is_not(None))
            .order_by(Selection.sample_id)
        ).all()
        return [
            TaskRequest(s.sample_id, uri, s.rank, score.value, campaign.labels[score.predicted_class],
                        score.confidence, s.external_task_id)
            for s, uri, score in rows if s.sample_id in waiting
        ]


def push_step(engine: Engine, round_id: int) -> None:
    """Hand the selection to the annotators and store the task ids they gave back.

    Samples of earlier rounds still out go along with this round's scores, so every task
    waiting in the tool carries the current model's prediction and its place in the order.
    """
    rnd, campaign, config = _load(engine, round_id)
    if rnd.status != RoundStatus.pushing:
        return
    started = time.perf_counter()
    reporter().phase(f"round {rnd.index} · sending {config.batch_size} samples to annotators", total=1)
    annotator = build_annotator(config, load_dataset(campaign.dataset))
    tasks = _task_requests(engine, Selection.round_id == round_id) + _leftover_requests(engine, rnd, campaign, config)
    task_ids = annotator.push(tasks, model_version=rnd.model_version, round_index=rnd.index)
    crash_point("push", rnd.index)
    with session_scope(engine) as session:
        for selection in round_selections(session, round_id):
            if selection.sample_id in task_ids:
                selection.external_task_id = task_ids[selection.sample_id]
        move_round(session, round_id, RoundStatus.pushing, RoundStatus.waiting_for_labels,
                   timings=_timings(rnd, "push", started))


def campaign_id(engine: Engine, name: str) -> int:
    with session_scope(engine) as session:
        campaign = session.scalar(select(Campaign).where(Campaign.name == name))
        if campaign is None:
            raise CampaignStateError(f"no campaign named {name!r} in this database")
        return campaign.id


def current_round_index(engine: Engine, campaign_id: int) -> int:
    """The index of the round a run would work on: the unfinished one, else the next."""
    with session_scope(engine) as session:
        last = latest_round(session, campaign_id)
        if last is None:
            return 1
        return last.index if last.status != RoundStatus.complete else last.index + 1


def completed_rounds(engine: Engine, campaign_id: int) -> int:
    from activelabel.storage.repository import count_rounds

    with session_scope(engine) as session:
        return count_rounds(session, campaign_id, RoundStatus.complete)


# Sync lives in its own module; re-exported so ``steps.sync_step`` etc. keep working.
from activelabel.campaign.sync import (  # noqa: E402
    SyncResult,
    _annotation_record,
    collect_answers,
    sync_campaign,
    sync_step,
)
