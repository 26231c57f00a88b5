"""The steps of one round, each a plain function over the database (Prefect wraps them).

Each step reads what it needs, does its work outside any transaction, then commits its output
together with the round's move to the next status. A step called on a round that is past it
does nothing, so rerunning a round after a crash resumes where it stopped and writes nothing
twice.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from activelabel.acquisition import get_strategy, select_top_k
from activelabel.annotation import TaskRequest
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.calibrate import fit_round_calibration, validation_positions
from activelabel.campaign.chance import chance_advice, no_better_than_chance
from activelabel.pipeline.calibration import predictive_probabilities
from activelabel.campaign.candidates import Candidates, candidate_count, distinct
from activelabel.campaign.shards import PoolScorer, ShardRunner, ShardScores, merge_shards, shard_requests
from activelabel.campaign.faults import crash_point
from activelabel.stop import signal_name, stop_signal
from activelabel.campaign.kinds import Trained, TrainInput, task_kind
from activelabel.campaign.data import CampaignData, campaign_data, one_pool_listing
from activelabel.campaign.density import MIN_LABELED, fit_round_density
from activelabel.campaign.growth import join_before_round
from activelabel.campaign.unreadable import shown_path, warn_unreadable
from activelabel.campaign.model_settings import model_spec, training_config, training_record
from activelabel.campaign.pixels import read_readable, stream_probabilities
from activelabel.campaign.refine import Refined, choose_candidates, refine_pool, refinement_passes, refines
from activelabel.campaign.setup import build_annotator
from activelabel.campaign.summary import accuracy_name, trained_on_words
from activelabel.errors import CampaignStateError, RoundAlreadyRunningError
from activelabel.pipeline.architectures import BATCH_NORM_ARCHITECTURES
from activelabel.pipeline.checkpoint import load_model, serialize_weights, weights_digest
from activelabel.pipeline.device import resolve_device, use_cpu_threads
from activelabel.pipeline.metrics import evaluate
from activelabel.pipeline.model import ModelSpec
from activelabel.pipeline.prediction import mc_strategy
from activelabel.pipeline.training import planned_epochs, train_model, uses_batch_norm
from activelabel.progress import reporter
from activelabel.storage import (
    Campaign,
    Heatmap,
    ModelCheckpoint,
    Round,
    RoundKind,
    RoundStatus,
    SampleSplit,
    Selection,
    session_scope,
)
from activelabel.storage.bulk import write_score_columns, write_scores
from activelabel.storage.repository import (
    SampleColumns,
    latest_round,
    move_round,
    outstanding_samples,
    problem_uris,
    record_problems,
    resolved_labels,
    round_score_values,
    round_scores_of,
    round_selections,
    selected_sample_ids,
    split_samples,
    unlabeled_pool_columns,
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


def ensemble_members(config: CampaignConfig) -> int:
    """Models trained per round: ``ensemble_size`` for the ensemble methods, else 1."""
    return config.ensemble_size if config.uncertainty.startswith("ensemble") else 1


def member_seed(seed: int, member: int) -> int:
    """Training seed of ensemble member ``member`` of a round seeded ``seed`` (member 0 is the
    single model's seed; the others differ, so each member starts from its own initialisation
    and sees its own batch order: Lakshminarayanan et al. 2017)."""
    return seed + 7919 * member


def _seed(config: CampaignConfig, rnd: Round) -> int:
    return config.seed * 1_000_003 + rnd.index


def _timings(rnd: Round, step: str, started: float) -> dict:
    return {**(rnd.timings or {}), step: round(time.perf_counter() - started, 4)}


def _training_timings(rnd: Round, started: float, evaluate_seconds: float) -> dict:
    """The train step's timings: ``train`` (fitting the models) and ``evaluate`` (measuring them
    on the yardstick and fitting the temperature), apart: the 10,000 MNIST test images through
    20 MC passes took 40 s of a "train" that fitted 5 optimizer steps (trial 17 F6)."""
    total = time.perf_counter() - started
    return {**(rnd.timings or {}), "train": round(total - evaluate_seconds, 4), "evaluate": round(evaluate_seconds, 4)}


def start_round(engine: Engine, campaign_id: int) -> int:
    """The round to work on: the unfinished one (a failed one is reopened), else a new one.

    A new round's kind follows from the labels so far: ``evaluation`` while the evaluation
    split is unlabeled, ``cold_start`` while fewer labels than ``min_labels_to_train`` exist,
    else ``active``. Before a new round, images added to the pool folder join the pool
    (:mod:`activelabel.campaign.growth`); a round in flight keeps its pool.
    """
    round_id, index = _open_round(engine, campaign_id)
    crash_point("start", index)  # tests: a stop landing just after the round's row was committed
    return round_id


def _open_round(engine: Engine, campaign_id: int) -> tuple[int, int]:
    """(id, index) of the round :func:`start_round` works on, committed."""
    _check_files_before_work(engine, campaign_id)
    with one_pool_listing():  # the join and the data refresh share one listing (and the stop check's)
        join_before_round(engine, campaign_id)
    with session_scope(engine) as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        last = latest_round(session, campaign_id)
        if last is not None and last.status != RoundStatus.complete:
            if last.status == RoundStatus.failed:
                resume_at = last.resume_step
                log.info("Resuming round %d of %r at step %s", last.index, campaign.name, resume_at.value)
                move_round(session, last.id, RoundStatus.failed, resume_at, error=None, failed_step=None)
            return last.id, last.index
        index = 1 if last is None else last.index + 1
        config = CampaignConfig.from_dict(campaign.config)
        kind, why = round_kind_and_reason(session, campaign_id, config)
        if kind != RoundKind.active:
            # A round that trains nothing says why: a second cold start (a cold-start round
            # completed with fewer labels than the threshold, e.g. min_new_labels < batch) or a
            # second evaluation round is otherwise a bare table row (trial F4).
            again = last is not None and last.kind == kind
            words = {RoundKind.evaluation: "evaluation round", RoundKind.cold_start: "cold start"}[kind]
            article = "another" if again else ("an" if kind == RoundKind.evaluation else "a")
            log.log(logging.WARNING if again else logging.INFO, "Round %d of %r is %s %s: %s",
                    index, campaign.name, article, words, why)
        strategy = campaign.strategy if kind == RoundKind.active else "random"
        rnd = Round(campaign_id=campaign_id, index=index, strategy=strategy, kind=kind, timings={})
        session.add(rnd)
        try:
            session.flush()
        except IntegrityError:
            raise RoundAlreadyRunningError(
                f"round {index} of campaign {campaign.name!r} is already running"
            ) from None
        return rnd.id, rnd.index


#: How the refusal of :func:`_check_files_before_work` says what to do (``run`` decides changes).
RUN_TO_DECIDE = "stop this command and run `activelabel run` on the campaign file"


def _check_files_before_work(engine: Engine, campaign_id: int) -> None:
    """``run``'s check of the stored files (:func:`~activelabel.campaign.integrity.check_stored_files`)
    before a round is started or reopened at a working step, so ``watch``, ``serve``'s ticks,
    ``resume`` and ``run``'s later rounds refuse what ``run`` refuses: a labeled image changed
    or gone. A round waiting for labels is not checked at each poll: its sync reads no file."""
    from activelabel.campaign.integrity import check_stored_files

    with session_scope(engine) as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        config = CampaignConfig.from_dict(campaign.config)
        last = latest_round(session, campaign_id)
        waiting = last is not None and last.status == RoundStatus.waiting_for_labels
    if not waiting:
        check_stored_files(engine, campaign_id, config, rerun=RUN_TO_DECIDE)


#: The same check for a caller that must know, without starting a round, whether its start
#: would be refused (a serve tick after a refused one: :mod:`activelabel.flows.refusal`).
check_files_before_work = _check_files_before_work


def next_round_kind(session, campaign_id: int, config: CampaignConfig) -> RoundKind:
    """The kind of the campaign's next round (see :func:`start_round`)."""
    return round_kind_and_reason(session, campaign_id, config)[0]


def round_kind_and_reason(session, campaign_id: int, config: CampaignConfig) -> tuple[RoundKind, str]:
    """The next round's kind and why, in the numbers and setting names that decided it, so the
    log can say why a round trains nothing (``rounds`` counts these rounds too)."""
    resolved = resolved_labels(session, campaign_id, config.annotations_per_task)
    taken = selected_sample_ids(session, campaign_id)
    evaluation = split_samples(session, campaign_id, SampleSplit.evaluation)
    # A copy shares its representative's label and an unreadable image is never sent (a file
    # removed from the folder): neither holds the evaluation round open.
    unreadable = problem_uris(session, campaign_id)
    open_evaluation = [s for s in evaluation if s.id not in resolved and s.id not in taken
                       and s.duplicate_of is None and s.uri not in unreadable]
    if open_evaluation:
        return RoundKind.evaluation, (
            f"{len(open_evaluation)} of the {len(evaluation)} evaluation samples (evaluation_size) "
            "are not labeled yet; no model is trained until they are")
    pool_labels = sum(
        s.id in resolved for s in split_samples(session, campaign_id, SampleSplit.pool) if s.duplicate_of is None
    )
    setting = ("min_labels_to_train" if config.min_labels_to_train
               else "min_labels_to_train (unset: the batch_size)")
    if pool_labels < config.cold_start_threshold:
        return RoundKind.cold_start, (
            f"{pool_labels} pool labels < {setting} {config.cold_start_threshold}; it picks "
            "at random and trains no model (rounds counts it)")
    return RoundKind.active, f"{pool_labels} pool labels >= {setting} {config.cold_start_threshold}"


def mark_failed(engine: Engine, round_id: int, error: BaseException) -> None:
    """Record where and why a round stopped; ``start_round`` resumes it at that step. A stop
    (Ctrl-C, SIGTERM) of a round waiting for labels records nothing: the stop landed in a poll's
    sync, which moves the round only to ``complete`` in one commit, so nothing was cut and the
    round keeps waiting (``watch``/``serve`` then end cleanly)."""
    with session_scope(engine) as session:
        rnd = session.get(Round, round_id)
        if rnd is None or rnd.status in (RoundStatus.complete, RoundStatus.failed):
            return
        signum = stop_signal(error)
        if signum is not None and rnd.status == RoundStatus.waiting_for_labels:
            return  # a stop during a waiting round's sync cut nothing: it still waits for labels
        rnd.failed_step = rnd.status
        rnd.status = RoundStatus.failed
        # A stop (ours or Prefect's TerminationSignal) reads in words ("stopped by SIGTERM");
        # other errors keep their type's name.
        rnd.error = (f"stopped by {signal_name(signum)}" if signum is not None
                     else f"{type(error).__name__}: {error}")[:4000]


def note_error(engine: Engine, round_id: int, error: BaseException) -> None:
    """Record why a round is waiting (e.g. Label Studio down) without moving it anywhere."""
    with session_scope(engine) as session:
        rnd = session.get(Round, round_id)
        if rnd is not None:
            rnd.error = f"{type(error).__name__}: {error}"[:4000]


def _labeled_pool(session, campaign_id: int, labels, unreadable: set[str]):
    """Pool samples a model trains on: labeled, readable, not copies."""
    pool = split_samples(session, campaign_id, SampleSplit.pool)
    return [s for s in pool if s.id in labels and s.duplicate_of is None and s.uri not in unreadable]


def _yardstick(session, campaign_id: int, data: CampaignData, labels, unreadable: set[str]) -> tuple[list[str], list[str]]:
    """(URIs, labels) the round is measured on: the given test split, or the evaluation split
    labeled by the annotators. Never samples a strategy picked: they are a biased sample."""
    uris, names = [], []
    for s in split_samples(session, campaign_id, SampleSplit.test):
        if s.duplicate_of is None and s.uri not in unreadable:
            uris.append(s.uri)
            names.append(data.given_label(s.uri))
    for s in split_samples(session, campaign_id, SampleSplit.evaluation):
        if s.id in labels and s.duplicate_of is None and s.uri not in unreadable:
            uris.append(s.uri)
            names.append(labels[s.id].label)
    return uris, names


def train_step(engine: Engine, round_id: int) -> None:
    """Train on every resolved pool label, measure on the yardstick, store weights and metrics.

    Evaluation and cold-start rounds train nothing: they move straight on to picking samples.
    """
    rnd, campaign, config = _load(engine, round_id)
    if rnd.status != RoundStatus.training:
        return
    started = time.perf_counter()
    data = campaign_data(config)
    with session_scope(engine) as session:
        labels = resolved_labels(session, campaign.id, config.annotations_per_task)
        unreadable = problem_uris(session, campaign.id)
        labeled = _labeled_pool(session, campaign.id, labels, unreadable)
        yard_uris, yard_labels = _yardstick(session, campaign.id, data, labels, unreadable)
    if rnd.kind != RoundKind.active:
        with session_scope(engine) as session:
            move_round(session, round_id, RoundStatus.training, RoundStatus.scoring,
                       labeled_count=len(labeled), timings=_timings(rnd, "train", started))
        log.info("Round %d (%s): no model trained, %d labels so far", rnd.index, rnd.kind.value, len(labeled))
        return
    trained = task_kind(config).train(TrainInput(
        engine, rnd, campaign, config, data, labeled, labels, yard_uris, yard_labels, _seed(config, rnd),
        resolve_device(config.device),
    ))
    models = trained.models
    version = f"r{rnd.index}-{weights_digest(models[0])[:12]}"
    crash_point("train", rnd.index)
    with session_scope(engine) as session:
        moved = move_round(
            session, round_id, RoundStatus.training, RoundStatus.scoring,
            model_version=version, labeled_count=trained.labeled_count,
            timings=_training_timings(rnd, started, trained.evaluate_seconds), **trained.round_values,
        )
        if moved:
            session.add_all(
                ModelCheckpoint(round_id=round_id, member=member, version=version,
                                architecture=trained.architecture, state=serialize_weights(net))
                for member, net in enumerate(models)
            )
            record_problems(session, campaign.id, trained.problems)
    if moved:
        warn_unreadable(log, f"Round {rnd.index}", trained.problems, shown=shown_path(data.root),
                        what="labeled image")
    log.log(trained.log_level, trained.message)


def train_classifier(job: TrainInput) -> Trained:
    """The classification kind's training: M models (ensembles) on the labeled pool's class
    labels, measured on the yardstick (accuracy, NLL, ECE), with temperature calibration."""
    rnd, campaign, config, data, labels = job.rnd, job.campaign, job.config, job.data, job.labels
    labeled, device = job.labeled, job.device
    x, kept, problems = read_readable(data.store, [s.uri for s in labeled])
    labeled = [labeled[i] for i in kept]
    class_of = {name: i for i, name in enumerate(campaign.labels)}
    y = np.array([class_of[labels[s.id].label] for s in labeled], dtype=np.int64)
    spec = model_spec(config, data.in_channels, len(campaign.labels), int(x.shape[-1]))
    held = validation_positions(len(labeled), job.seed) if config.calibrate else np.zeros(0, np.int64)
    train = np.setdiff1d(np.arange(len(labeled)), held)
    training = training_config(config, len(train))  # weight decay c / N: N the labels trained on
    progress = reporter()
    progress.phase(
        f"round {rnd.index} · {trained_on_words(len(train), len(held)).replace('trained', 'training', 1)}",
        planned_epochs(len(train), training, skips_batch_of_one=config.architecture in BATCH_NORM_ARCHITECTURES)
    )
    # Deep ensembles: M members from different seeds (member 0 is the single model's seed).
    models = [
        train_model(
            x[train], y[train], spec, training, seed=member_seed(job.seed, member), device=device,
            on_epoch=lambda epoch, _epochs, _loss: progress.advance(epoch),
        )
        for member in range(ensemble_members(config))
    ]
    measuring = time.perf_counter()
    metrics, yard_logits, yard_targets = _measure(models, data, config, job.yard_uris, job.yard_labels, class_of,
                                                  device, problems)
    # Calibrate the predictor acquisition reads: with MC passes, those of the round's scoring.
    samples = 0 if config.uncertainty in ("deterministic", "ensemble") else config.mc_samples
    if len(held) and samples and yard_logits is not None:
        _, yard_logits, yard_targets = _measure(models, data, config, job.yard_uris, job.yard_labels, class_of,
                                                device, [], samples=samples, seed=job.seed)
    calibration = (fit_round_calibration(models, x[held], y[held], yard_logits, yard_targets, device,
                                         samples=samples, seed=job.seed, method=config.uncertainty)
                   if len(held) else None)
    evaluate_seconds = time.perf_counter() - measuring
    values = dict(
        test_accuracy=metrics.accuracy if metrics else None,
        test_nll=metrics.nll if metrics else None, test_ece=metrics.ece if metrics else None,
        calibration=calibration,
        training=training_record(config, training, len(train), members=len(models), held_out=len(held),
                                 skips_batch_of_one=uses_batch_norm(models[0])),
    )
    if metrics is None:
        return Trained(models, spec.to_dict(), len(labeled), values, problems, logging.WARNING,
                       f"Round {rnd.index}: {trained_on_words(len(train), len(held))}; no test or labeled evaluation "
                       "sample to measure on", evaluate_seconds)
    message = (f"Round {rnd.index}: {trained_on_words(len(train), len(held))}, "
               f"{accuracy_name('classification', campaign.config)} {metrics.accuracy:.3f} "
               f"(NLL {metrics.nll:.3f}, ECE {metrics.ece:.3f})")
    chance = no_better_than_chance(metrics.accuracy, yard_targets, campaign.labels,
                                   advice=chance_advice(campaign.name, rnd.index, config.fixed_epochs))
    return Trained(models, spec.to_dict(), len(labeled), values, problems,
                   logging.INFO if chance is None else logging.WARNING,
                   message if chance is None else f"{message}: {chance}", evaluate_seconds)


def _measure(model, data: CampaignData, config: CampaignConfig, uris, names, class_of, device, problems,
             *, samples: int = 0, seed: int = 0):
    """(metrics, logits [M, N, C], targets [N]) of one deterministic pass of each of the M
    models over the yardstick (metrics on the mean of their softmaxes); (None, None, None)
    without a readable yardstick sample. ``samples > 0``: ``samples`` MC passes of each model
    with masks seeded ``seed`` instead (logits [M * samples, N, C])."""
    if not uris:
        return None, None, None
    targets = np.array([class_of[n] for n in names], dtype=np.int64)
    logits, rows = [], []
    for positions, z in stream_probabilities(model, data.store, uris, samples=samples, device=device, seed=seed,
                                             workers=config.loader_workers, problems=problems, logits=True):
        rows.append(positions)
        logits.append(z)
    if not rows:
        return None, None, None
    z = np.concatenate(logits, axis=1)
    probs = predictive_probabilities(z)  # the mean of the members' softmaxes
    targets = targets[np.concatenate(rows)]
    return evaluate(probs.astype(np.float32), targets), z, targets


def score_step(engine: Engine, round_id: int, *, run_shards: ShardRunner | None = None) -> None:
    """Score every candidate sample; one bulk write with the round's move to selecting.

    Active rounds score the unlabeled pool chunk by chunk with the round's model (MC dropout);
    cold-start rounds give the unlabeled pool seeded random scores; evaluation rounds give the
    evaluation split random scores (a random order for the annotators).

    ``run_shards`` (a :class:`~activelabel.campaign.shards.ShardRunner`, e.g. a Dask cluster)
    scores an active classification round's pool as shards elsewhere; the rows and the
    selection are those of one process. The pool is read as two columns (ids, URIs) and the
    scores are kept and written as columns: memory per pool sample is about 160 bytes.
    """
    rnd, campaign, config = _load(engine, round_id)
    if rnd.status != RoundStatus.scoring:
        return
    started = time.perf_counter()
    with session_scope(engine) as session:
        if rnd.kind == RoundKind.evaluation:
            taken = selected_sample_ids(session, campaign.id)
            pool = SampleColumns.of(s for s in split_samples(session, campaign.id, SampleSplit.evaluation)
                                    if s.id not in taken and s.duplicate_of is None)
        else:
            pool = _pool_subset(unlabeled_pool_columns(session, campaign.id), config, rnd)
        # Still out with annotators from earlier rounds: scored too (as this round's scores, never
        # selected again) so push gives their tasks this round's prediction and place in the order.
        leftovers = SampleColumns.of(outstanding_samples(session, campaign.id, config.annotations_per_task)
                                     if rnd.kind == RoundKind.active else [])
        checkpoints = list(session.scalars(
            select(ModelCheckpoint).where(ModelCheckpoint.round_id == round_id).order_by(ModelCheckpoint.member)))
        batch_now = batch_size_now(session, campaign.id, config)
        labeled: list[tuple[str, int]] = []
        if rnd.kind == RoundKind.active:  # the feature density's fitting set: what the model learned
            labels = resolved_labels(session, campaign.id, config.annotations_per_task)
            class_of = {name: i for i, name in enumerate(campaign.labels)}
            labeled = [(s.uri, class_of[labels[s.id].label])
                       for s in _labeled_pool(session, campaign.id, labels, problem_uris(session, campaign.id))
                       if labels[s.id].label in class_of]  # class labels only (a mask is no class)
    problems: list[tuple[str, str]] = []
    mean_entropy = None
    scored = None
    rows: list[tuple] = []
    if rnd.kind != RoundKind.active:
        values = np.random.default_rng(_seed(config, rnd)).random(len(pool))
        wanted = len(pool) if rnd.kind == RoundKind.evaluation else config.batch_size
        pool, values = _readable_first(campaign_data(config).store, pool, values, wanted, problems)
        columns = {"sample_id": pool.ids, "value": values, "predicted_class": np.full(len(pool), -1, np.int64),
                   "confidence": np.zeros(len(pool))}
    else:
        assert checkpoints
        extra_args = {} if run_shards is None else {"run_shards": run_shards}
        scored = task_kind(config).score_pool(rnd, campaign, config, checkpoints, pool + leftovers, problems,
                                              batch_size=batch_now, selectable=len(pool), labeled=labeled,
                                              seed=_seed(config, rnd), **extra_args)
        rows, columns, mean_entropy = scored.rows, scored.columns, scored.mean_entropy
    count = len(rows) if columns is None else len(columns["sample_id"])
    crash_point("score", rnd.index)
    extra = {} if scored is None else {"uncertainty": scored.uncertainty, "batch_plan": scored.batch_plan}
    with session_scope(engine) as session:
        if move_round(session, round_id, RoundStatus.scoring, RoundStatus.selecting,
                      pool_count=count - len(leftovers), mean_pool_entropy=mean_entropy,
                      timings=_timings(rnd, "score", started), **extra):
            if columns is None:
                write_scores(session, rows)  # a kind that gives row tuples (segmentation)
            else:
                write_score_columns(session, round_id, rnd.strategy, columns)
            record_problems(session, campaign.id, problems)
    if problems:
        warn_unreadable(log, f"Round {rnd.index}", problems, shown=shown_path(campaign_data(config).root))


def _pool_subset(pool, config: CampaignConfig, rnd: Round):
    """Active rounds with ``pool_subset``: a random subset of the pool (a list, or
    :class:`~activelabel.storage.repository.SampleColumns`), seeded by the campaign's seed and
    the round index (Gal et al. 2017 score 2,000 random pool samples per round)."""
    if rnd.kind != RoundKind.active or config.pool_subset is None or len(pool) <= config.pool_subset:
        return pool
    rng = np.random.default_rng([config.seed, rnd.index, 2])
    picked = np.sort(rng.choice(len(pool), config.pool_subset, replace=False))
    return pool.take(picked) if isinstance(pool, SampleColumns) else [pool[int(i)] for i in picked]


def _readable_first(store, pool: SampleColumns, values, wanted: int, problems) -> tuple[SampleColumns, np.ndarray]:
    """Random picks must be images an annotator can see: decode the best-scored candidates
    until ``wanted`` readable ones are found; unreadable ones are recorded and dropped."""
    order = np.argsort(-values, kind="stable")
    keep = np.ones(len(pool), dtype=bool)
    readable = 0
    for i in order:
        if readable == wanted:
            break
        _, kept, found = read_readable(store, [pool.uris[int(i)]])
        if kept:
            readable += 1
        else:
            keep[int(i)] = False
            problems.extend(found)
    if keep.all():
        return pool, values
    return pool.take(np.flatnonzero(keep)), values[keep]


@dataclass
class ScoredPool:
    """What scoring the pool gives the round: the scores, the mean predictive entropy, how it
    was scored, and a batch-aware strategy's batch.

    The scores are ``columns`` (score column name -> array, one entry per scored sample, as
    :func:`~activelabel.storage.bulk.write_score_columns` takes them), or, from a kind that
    builds row tuples (segmentation), ``rows`` in ``storage.bulk.ALL_SCORE_COLUMNS`` order with
    ``columns`` None.
    """

    rows: list[tuple]
    mean_entropy: float | None
    uncertainty: dict
    batch_plan: dict | None
    columns: dict[str, np.ndarray] | None = None


def _score_pool(rnd, campaign, config, checkpoints, pool, problems, *, batch_size: int, selectable: int,
                labeled: list[tuple[str, int]], run_shards: ShardRunner | None = None) -> ScoredPool:
    """Score ``pool`` chunk by chunk with the round's model (or ensemble members); the first
    ``selectable`` samples may be selected (the rest are earlier rounds' leftovers, scored for
    their tasks only). ``labeled`` (uri, class index) is the feature density's fitting set.
    With ``run_shards`` the chunks are scored as shards by that runner (a Dask cluster) with the
    density fitted here; the columns are the same bit for bit."""
    data = campaign_data(config)
    device = resolve_device(config.device)
    models = [load_model(ModelSpec.from_dict(c.architecture), c.state, device) for c in checkpoints]
    model = models if len(models) > 1 else models[0]
    progress = reporter()
    progress.phase(f"round {rnd.index} · scoring {len(pool)} pool samples × "
                   f"{len(models) * (1 if config.uncertainty in ('deterministic', 'ensemble') else config.mc_samples)}"
                   " passes" + (f" on {run_shards.shards} shards" if run_shards is not None else ""), len(pool))
    strategy = get_strategy(rnd.strategy)
    seed = _seed(config, rnd)
    temperature = _acquisition_temperature(rnd, config)
    samples = 0 if config.uncertainty in ("deterministic", "ensemble") else config.mc_samples
    fitted = fit_round_density(model, data.store, [u for u, _ in labeled], np.array([c for _, c in labeled]),
                               len(campaign.labels), percentile=config.ood_percentile, device=device, seed=seed,
                               workers=config.loader_workers, problems=problems)
    if fitted is None and strategy.needs_features:
        raise CampaignStateError(
            f"round {rnd.index}: the {strategy.name!r} strategy needs a feature density fitted on at least "
            f"{MIN_LABELED} readable labeled images; label more (min_labels_to_train) or choose another strategy"
        )
    candidates = candidate_count(batch_size) if strategy.batch_aware else 0
    if run_shards is None:
        scorer = PoolScorer(strategy, fitted, seed, candidates=candidates, selectable=selectable)
        for positions, probs, *feats in stream_probabilities(
            model, data.store, pool.uris, samples=samples, device=device,
            seed=seed, workers=config.loader_workers, problems=problems,
            on_batch=progress.advance, temperature=temperature, features=fitted is not None,
        ):
            scorer.add(positions, probs, feats[0] if feats else None)
        scores = scorer.result()
    else:
        requests = shard_requests(config, rnd.id, strategy.name, pool.uris, seed=seed, samples=samples,
                                  temperature=temperature, shards=run_shards.shards,
                                  database_url=run_shards.database_url, workers=config.loader_workers,
                                  flow_database_url=getattr(run_shards, "flow_database_url", None),
                                  density=fitted, candidates=candidates, selectable=selectable)
        scores = merge_shards(run_shards(requests))
        problems.extend(scores.problems)
        progress.advance(len(pool))
    refined = None
    if config.refine_passes != 0 and batch_size > 0 and refines(strategy, samples):  # campaign.refine
        refined = _refine(scores, pool, selectable, model=model, store=data.store, strategy=strategy, config=config,
                          seed=seed, samples=samples, temperature=temperature, device=device, problems=problems)
    uncertainty = {
        "method": config.uncertainty,
        "samples": len(models) * max(samples, 1),
        "members": len(models),
        "mode": mc_strategy(models[0], samples),
        "temperature": temperature,
    }
    if run_shards is not None:
        uncertainty["shards"] = len(requests)
    if fitted is not None:
        flagged = int(np.sum(scores.ood[scores.positions < selectable]))
        uncertainty["density"] = {**fitted.summary, "flagged": flagged}
    plan = None
    if refined is not None:
        uncertainty["refined"] = refined.summary()
        plan = refined.plan(pool.ids)
    if scores.candidates is not None:
        uncertainty["candidates"] = int(len(scores.candidates.positions))
        plan = _batch_plan(strategy, scores.candidates, pool, batch_size, seed)
    return ScoredPool([], scores.mean_entropy, uncertainty, plan, scores.score_columns(pool.ids))


def _refine(scores: ShardScores, pool, selectable: int, *, model, store, strategy, config, seed: int, samples: int,
            temperature: float, device, problems) -> Refined:
    """Refinement (:mod:`activelabel.campaign.refine`) of the first stage's columns, in place:
    the ``config.refine_count`` best selectable samples are re-scored with
    ``config.refine_passes`` passes (unset: 1,000 capped at the first stage's cost unless only
    the head is sampled: :func:`~activelabel.campaign.refine.refinement_passes`) and their columns carry the refined score, prediction and
    decomposition. Runs in this process after the shards merge, so a sharded round refines
    the same candidates with the same masks as one process. The round's mean entropy takes
    the candidates' refined totals (their correction is added after every chunk's sum)."""
    mine = scores.positions < selectable
    chosen = choose_candidates(scores.values[mine], scores.positions[mine], config.refine_count)
    passes = refinement_passes(config.refine_passes, mc_strategy(model[0] if isinstance(model, list) else model,
                                                                 samples), scored=len(scores), samples=samples,
                               candidates=len(chosen))
    refined = refine_pool(model, store, pool.uris, chosen, strategy=strategy, passes=passes,
                          seed=seed, temperature=temperature, device=device, workers=config.loader_workers,
                          problems=problems)
    at = np.searchsorted(scores.positions, refined.positions)
    assert np.array_equal(scores.positions[at], refined.positions), "refined a sample the first stage did not score"
    correction = float(np.sum(refined.total) - np.sum(scores.total[at]))
    for column in ("values", "predicted", "confidence", "total", "aleatoric", "epistemic"):
        getattr(scores, column)[at] = getattr(refined, column)
    scores.chunk_entropy.append((sys.maxsize, correction))
    return refined


def _batch_plan(strategy, candidates: Candidates, pool, batch_size: int, seed: int) -> dict:
    """The batch a batch-aware strategy picks among the distinct candidates, in rank order."""
    if candidates.probs is None or batch_size == 0:
        return {"sample_ids": [], "scores": [], "distinct": 0}
    keep = distinct(candidates.probs, candidates.bald)
    batch = strategy.select_batch(candidates.probs[:, keep], min(batch_size, len(keep)),
                                  rng=np.random.default_rng(seed))
    chosen = [int(keep[i]) for i in batch.indices]
    scores = [float(v) for v in batch.scores]
    # Fewer distinct images than the batch: near-copies fill it, most informative first.
    kept = set(keep.tolist())
    copies = [int(i) for i in np.lexsort((candidates.positions, -candidates.bald)) if int(i) not in kept]
    for i in copies[: max(0, batch_size - len(chosen))]:
        chosen.append(i)
        scores.append(float(candidates.bald[i]))
    return {
        "sample_ids": [pool[int(candidates.positions[i])].id for i in chosen],
        "scores": scores,
        "distinct": int(len(keep)),
    }


def _acquisition_temperature(rnd, config) -> float:
    """The temperature acquisition divides logits by (1.0 unless calibrated and asked for)."""
    if config.calibrate and rnd.calibration and rnd.calibration.get("temperature"):
        return float(rnd.calibration["temperature"])
    return 1.0


def select_step(engine: Engine, round_id: int) -> None:
    """Keep the highest scores (ties: lower sample id first) as this round's selection.

    Active and cold-start rounds take ``batch_size`` (fewer when the label budget is nearly
    spent); an evaluation round takes every evaluation sample it scored.
    """
    rnd, campaign, config = _load(engine, round_id)
    if rnd.status != RoundStatus.selecting:
        return
    started = time.perf_counter()
    with session_scope(engine) as session:
        taken = selected_sample_ids(session, campaign.id)  # earlier rounds' leftovers were scored too
        # Ids and values only (a million Score objects would cost ~1 GB); rows of the picked ones.
        ids, values = round_score_values(session, round_id, rnd.strategy)
        keep = ~np.isin(ids, np.fromiter(taken, dtype=np.int64, count=len(taken)))
        ids, values = ids[keep], values[keep]
        size = len(ids) if rnd.kind == RoundKind.evaluation else batch_size_now(session, campaign.id, config)
        if _target_reached(rnd, config):
            size = 0  # the model this round trained is good enough: no more labels are spent
        reporter().phase(f"round {rnd.index} · selecting {min(size, len(ids))}", total=1)
        if rnd.kind != RoundKind.evaluation and 0 < len(ids) < size:
            log.warning("Round %d: the pool has only %d samples left to select, fewer than the batch of %d; "
                        "all %d are selected", rnd.index, len(ids), size, len(ids))
        if rnd.batch_plan is not None:  # a batch-aware strategy chose the batch while scoring
            scored = set(ids.tolist())
            wanted = [i for i in rnd.batch_plan["sample_ids"] if i in scored][:size]
        else:
            chosen = select_top_k(values, min(size, len(ids))) if len(ids) and size > 0 else []
            wanted = [int(ids[int(i)]) for i in chosen]
        picked = round_scores_of(session, round_id, rnd.strategy, wanted)
        mean_score = float(np.mean([s.value for s in picked])) if picked and rnd.kind == RoundKind.active else None
        crash_point("select", rnd.index)
        if move_round(session, round_id, RoundStatus.selecting, RoundStatus.pushing,
                      mean_selected_score=mean_score, timings=_timings(rnd, "select", started)):
            session.add_all(
                Selection(
                    campaign_id=campaign.id, round_id=round_id, sample_id=s.sample_id, rank=rank,
                    score=s.value,
                    predicted_label=campaign.labels[s.predicted_class] if s.predicted_class >= 0 else "",
                    confidence=s.confidence,
                )
                for rank, s in enumerate(picked)
            )


def _target_reached(rnd: Round, config: CampaignConfig) -> bool:
    return (rnd.kind == RoundKind.active and config.target_accuracy is not None
            and rnd.test_accuracy is not None and rnd.test_accuracy >= config.target_accuracy)


def labels_committed(session, campaign_id: int, config: CampaignConfig) -> int:
    """Labels spent through the campaign (annotators or simulation; labels given with the data
    excluded) plus samples still out with the annotators (they will be spent)."""
    from activelabel.storage import Annotation

    given = set(session.scalars(select(Annotation.sample_id).where(
        Annotation.campaign_id == campaign_id, Annotation.source == "given")))
    resolved = resolved_labels(session, campaign_id, config.annotations_per_task)
    spent = sum(sample_id not in given for sample_id in resolved)
    return spent + len(selected_sample_ids(session, campaign_id) - set(resolved))


def batch_size_now(session, campaign_id: int, config: CampaignConfig) -> int:
    """The batch size, cut so the label budget is never exceeded (counting samples still out)."""
    if config.label_budget is None:
        return config.batch_size
    left = config.label_budget - labels_committed(session, campaign_id, config)
    return max(0, min(config.batch_size, left))


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
    from activelabel.campaign.still_out import tasks_still_out
    from activelabel.storage import Sample, Score

    waiting = {t.sample_id for t in tasks_still_out(engine, campaign.id, config.annotations_per_task)}
    with session_scope(engine) as session:
        rows = session.execute(
            select(Selection, Sample.uri, Score).join(Sample, Sample.id == Selection.sample_id)
            .join(Score, (Score.sample_id == Selection.sample_id) & (Score.round_id == rnd.id)
                  & (Score.strategy == rnd.strategy))
            .where(Selection.campaign_id == campaign.id, Selection.round_id != rnd.id,
                   Selection.external_task_id.is_not(None))
            .order_by(Selection.sample_id)
        ).all()
        return [
            TaskRequest(s.sample_id, uri, s.rank, score.value,
                        campaign.labels[score.predicted_class] if score.predicted_class >= 0 else "",
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
    annotator = build_annotator(config, campaign_data(config))
    tasks = _task_requests(engine, Selection.round_id == round_id) + _leftover_requests(engine, rnd, campaign, config)
    # Segmentation: each task's predicted mask and heatmap file, written (again, identically)
    # before anything leaves; the heatmap rows are stored with the move below.
    prepared = task_kind(config).prepare_tasks(engine, rnd, campaign, config, tasks, _seed(config, rnd))
    heatmaps = prepared.heatmap_rows
    task_ids = annotator.push(prepared.tasks, model_version=rnd.model_version, round_index=rnd.index)
    crash_point("push", rnd.index)
    with session_scope(engine) as session:
        for selection in round_selections(session, round_id):
            if selection.sample_id in task_ids:
                selection.external_task_id = task_ids[selection.sample_id]
        if move_round(session, round_id, RoundStatus.pushing, RoundStatus.waiting_for_labels,
                      timings=_timings(rnd, "push", started)):
            session.add_all(Heatmap(**row) for row in heatmaps)


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
