"""Labels come back: the annotators' answers as the database's annotations, kept equal to theirs.

The backend (Label Studio) is the source of truth for annotations. A sync stores new answers
once each, follows edits (the label is replaced, the old one kept in ``annotation_change``) and
deletions (the row goes, its vote with it, the history keeps it), including on samples resolved
long ago. Resolved labels are derived from the current rows, so the next round trains on the
new labels while finished rounds' records stay as they were.

A skip in Label Studio is stored too (status ``skipped``, never a vote) and followed like an
answer: turned into an answer, it becomes one (the skip kept in ``annotation_change``). A
sample that enough annotators answered or skipped, but that is not resolved, is *set aside*
(:func:`~activelabel.storage.repository.set_aside_samples`): no round waits for it.

It reads only what changed: a backend that offers ``changed_since(cursor)`` (Label Studio) is
asked for the tasks changed since the stored high-water mark; one that does not (the simulated
oracle, whose answers never change) is asked for the samples still out, as before.

Tasks still out that Label Studio no longer holds (the project deleted, the server reset) are
pushed again before they are read (:mod:`activelabel.campaign.lost_tasks`), with a warning.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, select

from activelabel.annotation import LabelAnswer, TaskRequest
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.faults import crash_point
from activelabel.campaign.kinds import task_kind
from activelabel.campaign.lost_tasks import restore_lost_tasks
from activelabel.campaign.setup import build_annotator
from activelabel.campaign.still_out import tasks_still_out
from activelabel.campaign.data import campaign_data
from activelabel.progress import reporter
from activelabel.storage import (
    Annotation,
    AnnotationStatus,
    Campaign,
    RoundKind,
    RoundStatus,
    Selection,
    session_scope,
)
from activelabel.storage.models import utcnow
from activelabel.storage.repository import (
    NewAnnotation,
    add_annotations,
    get_sync_cursor,
    latest_round,
    move_round,
    reconcile_annotations,
    resolved_labels,
    set_aside_samples,
    set_sync_cursor,
)

log = logging.getLogger(__name__)

#: The reason stored with a skip.
SKIPPED_REASON = "skipped in Label Studio"

__all__ = ["CollectResult", "SyncResult", "collect_answers", "sync_campaign", "sync_step"]


@dataclass(frozen=True)
class SyncResult:
    """What a sync did: answers stored (skips not counted), of which rejected, samples of the
    round the round still waits for (set-aside ones not counted), annotations edited or
    deleted in the backend since the last sync, skips stored, and samples of the round set
    aside by skips."""

    new_labels: int
    rejected: int
    pending: int
    edited: int = 0
    deleted: int = 0
    skipped: int = 0
    set_aside: int = 0


@dataclass(frozen=True)
class CollectResult:
    """What collecting stored: ``new`` answers (skips not counted), of which ``rejected``;
    edits and deletions followed; ``skipped``: skips stored."""

    new: int
    rejected: int
    edited: int = 0
    deleted: int = 0
    skipped: int = 0


def _steps():
    # steps.py re-exports this module's names; import it lazily so either can be imported first.
    from activelabel.campaign import steps

    return steps


def collect_answers(engine: Engine, campaign: Campaign, config: CampaignConfig, round_index: int) -> CollectResult:
    """Make the campaign's stored annotations equal to what the annotators hold now
    (:func:`_collect_answers`), and warn about samples this resolved by a split decision (no
    majority among several annotators' answers: ``campaign.agreement``), naming those in the
    evaluation split, since a wrong label there skews every round's yardstick."""
    from activelabel.campaign.agreement import SplitWatch

    watch = SplitWatch.start(engine, campaign.id)
    got = _collect_answers(engine, campaign, config, round_index)
    watch.warn(log, campaign.name)
    return got


def _collect_answers(engine: Engine, campaign: Campaign, config: CampaignConfig, round_index: int) -> CollectResult:
    """Make the campaign's stored annotations equal to what the annotators hold now.

    With a backend that reports changes (``changed_since``), every changed task of any round is
    reconciled (new, edited, deleted) and the cursor moves, in one transaction. Otherwise only
    the samples still out are asked and new answers stored. A label outside the label set is
    stored as rejected with a reason naming the task and the label.
    """
    steps = _steps()
    tasks = steps._task_requests(engine, Selection.campaign_id == campaign.id)
    with session_scope(engine) as session:
        round_of = dict(session.execute(
            select(Selection.sample_id, Selection.round_id).where(Selection.campaign_id == campaign.id)
        ).all())
    task_of = {t.sample_id: t for t in tasks}
    annotator = build_annotator(config, campaign_data(config))
    known = task_kind(config).answer_labels(campaign.labels)
    if hasattr(annotator, "changed_since"):
        with session_scope(engine) as session:
            cursor = get_sync_cursor(session, campaign.id, annotator.source)
        snapshot = annotator.changed_since(cursor, round_index=round_index)
        samples = {s for s in snapshot.sample_ids if s in task_of}
        answers = [(a, snapshot.updated_at.get(a.external_id)) for a in snapshot.answers if a.sample_id in samples]
        # The samples still out are few (a round's batch and its leftovers): read them whole too,
        # so a round never waits on an answer the change cursor missed.
        waiting = [t for t in tasks_still_out(engine, campaign.id, config.annotations_per_task, tasks)
                   if t.sample_id not in samples]
        if waiting:
            # Tasks Label Studio lost (project deleted, server reset) are pushed again first.
            waiting = restore_lost_tasks(engine, campaign, annotator, waiting, round_index)
            answers += annotator.answers_of_tasks(waiting, round_index=round_index)
            samples |= {t.sample_id for t in waiting}
        records = [
            _annotation_record(a, task_of.get(a.sample_id), round_of.get(a.sample_id), known,
                               annotator.source, updated)
            for a, updated in answers
        ]
        crash_point("sync", round_index)
        with session_scope(engine) as session:
            result = reconcile_annotations(session, campaign.id, annotator.source, samples, records)
            if snapshot.cursor is not None:
                set_sync_cursor(session, campaign.id, annotator.source, snapshot.cursor)
        for record in result.new_rejected:
            log.warning("Round %d: %s; stored as rejected", round_index, record.reason)
        if result.edited or result.deleted:
            log.info("Round %d: %d annotations edited and %d deleted in %s since the last sync; "
                     "labels follow them", round_index, result.edited, result.deleted, annotator.source)
        return CollectResult(result.new - result.new_skipped, len(result.new_rejected), result.edited,
                             result.deleted, result.new_skipped)

    outstanding = tasks_still_out(engine, campaign.id, config.annotations_per_task, tasks)
    if not outstanding:
        return CollectResult(0, 0)
    answers = annotator.pull(outstanding, round_index=round_index)
    records = [_annotation_record(a, task_of.get(a.sample_id), round_of.get(a.sample_id), known,
                                  annotator.source)
               for a in answers]
    crash_point("sync", round_index)
    with session_scope(engine) as session:
        stored = set(session.scalars(select(Annotation.external_id).where(
            Annotation.campaign_id == campaign.id, Annotation.source == annotator.source,
        )))
        fresh = [r for r in records if r.external_id not in stored]
        add_annotations(session, campaign.id, fresh)
    rejected = [r for r in fresh if r.status == AnnotationStatus.rejected]
    for record in rejected:
        log.warning("Round %d: %s; stored as rejected", round_index, record.reason)
    skipped = sum(r.status == AnnotationStatus.skipped for r in fresh)
    return CollectResult(len(fresh) - skipped, len(rejected), skipped=skipped)


def sync_step(engine: Engine, round_id: int) -> SyncResult:
    """Store the annotators' answers once each; complete the round once enough are resolved.

    A label outside the campaign's label set is stored as rejected, with a reason naming the
    task and the label, so it is visible and never trained on. The round completes when
    ``labels_to_complete`` of its own samples are resolved, counting only samples not set aside
    by skips (:func:`~activelabel.storage.repository.set_aside_samples`).
    """
    steps = _steps()
    rnd, campaign, config = steps._load(engine, round_id)
    if rnd.status != RoundStatus.waiting_for_labels:
        return SyncResult(0, 0, 0)
    started = time.perf_counter()
    reporter().phase(f"round {rnd.index} · collecting labels", total=1)
    got = collect_answers(engine, campaign, config, rnd.index)
    with session_scope(engine) as session:
        resolved = resolved_labels(session, campaign.id, config.annotations_per_task)
        aside = set_aside_samples(session, campaign.id, config.annotations_per_task, resolved.keys())
        mine = session.scalars(select(Selection.sample_id).where(Selection.round_id == round_id)).all()
        done = sum(sample_id in resolved for sample_id in mine)
        # Set aside: skipped, and no annotator left to answer (Label Studio's skip queue serves a
        # skipped task only to those who have not seen it). Waiting for it would be forever, so
        # the round needs only its other samples; its task stays out, and a late answer still
        # resolves it.
        settled = sum(sample_id in aside for sample_id in mine)
        # An evaluation round is the yardstick: all of it must be labeled, except samples set
        # aside (a sample no annotator will label cannot be the yardstick; waiting forever is
        # worse). Everything set aside: the round completes with no new label.
        open_ = len(mine) - settled
        needed = open_ if rnd.kind == RoundKind.evaluation else min(config.labels_to_complete, open_)
        if done >= needed:
            move_round(session, round_id, RoundStatus.waiting_for_labels, RoundStatus.complete,
                       finished_at=utcnow(), error=None, timings=steps._timings(rnd, "sync", started))
    if got.new or got.skipped:
        log.info("Round %d: %d new answers, %d skips, %d of %d samples resolved, %d set aside by skips",
                 rnd.index, got.new, got.skipped, done, len(mine), settled)
    return SyncResult(new_labels=got.new, rejected=got.rejected, pending=len(mine) - done - settled,
                      edited=got.edited, deleted=got.deleted, skipped=got.skipped, set_aside=settled)


def sync_campaign(engine: Engine, campaign_id: int) -> SyncResult:
    """Pull answers for a campaign: completes its waiting round when enough are resolved."""
    steps = _steps()
    with session_scope(engine) as session:
        last = latest_round(session, campaign_id)
    if last is None:
        return SyncResult(0, 0, 0)
    if last.status == RoundStatus.waiting_for_labels:
        return sync_step(engine, last.id)
    _, campaign, config = steps._load(engine, last.id)
    got = collect_answers(engine, campaign, config, last.index)
    return SyncResult(new_labels=got.new, rejected=got.rejected, pending=0, edited=got.edited,
                      deleted=got.deleted, skipped=got.skipped)


def _annotation_record(
    answer: LabelAnswer, task: TaskRequest | None, round_id: int | None, known: set[str], source: str,
    updated_at: datetime | None = None,
) -> NewAnnotation:
    where = f"task {task.external_task_id} (sample {task.uri})" if task else f"sample {answer.sample_id}"
    if answer.skipped:  # no vote: stored so the sample can be set aside, and followed if answered later
        return NewAnnotation(
            sample_id=answer.sample_id, annotator=answer.annotator, label="", source=source,
            external_id=answer.external_id, round_id=round_id, status=AnnotationStatus.skipped,
            reason=SKIPPED_REASON, updated_at=updated_at,
        )
    if answer.error is not None:  # e.g. a brush result that does not decode into a mask
        reason = f"{where}: {answer.error}"
    elif answer.label not in known:
        reason = f"{where}: label {answer.label!r} is not in the label set"
    else:
        reason = None
    return NewAnnotation(
        sample_id=answer.sample_id, annotator=answer.annotator, label=answer.label, source=source,
        external_id=answer.external_id, round_id=round_id,
        status=AnnotationStatus.accepted if reason is None else AnnotationStatus.rejected,
        reason=reason, updated_at=updated_at, mask=answer.mask if reason is None else None,
    )
