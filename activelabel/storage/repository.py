"""Queries and writes the pipeline needs, each a small function over a Session.

Writes that must never double are guarded by the schema's unique constraints; bulk writes use
``insert()`` with lists of dicts (executemany) in large batches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple

import numpy as np

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from activelabel.errors import CampaignStateError
from activelabel.storage.bulk import SCORE_COLUMNS, write_scores
from activelabel.storage.labels import ResolvedLabel, majority_vote
from activelabel.storage.models import (
    Annotation,
    AnnotationChange,
    AnnotationChangeKind,
    AnnotationStatus,
    Campaign,
    Round,
    RoundStatus,
    Sample,
    SampleProblem,
    SampleSplit,
    Score,
    Selection,
    SyncCursor,
    utcnow,
)

BULK_CHUNK = 20_000


@dataclass(frozen=True)
class NewSample:
    uri: str
    content_hash: str
    split: SampleSplit
    size_bytes: int | None = None
    mtime_ns: int | None = None


@dataclass(frozen=True)
class NewAnnotation:
    sample_id: int
    annotator: str
    label: str
    source: str
    external_id: str
    round_id: int | None = None
    status: AnnotationStatus = AnnotationStatus.accepted
    reason: str | None = None
    updated_at: datetime | None = None
    # Segmentation: the mask as PNG bytes (see ``Annotation.mask``); None for class labels.
    mask: bytes | None = None


def get_campaign(session: Session, name: str) -> Campaign | None:
    return session.scalar(select(Campaign).where(Campaign.name == name))


def require_campaign(session: Session, name: str) -> Campaign:
    """The campaign named ``name``; raises CampaignStateError naming it when there is none."""
    campaign = get_campaign(session, name)
    if campaign is None:
        raise CampaignStateError(f"no campaign named {name!r} in this database")
    return campaign


def add_samples(session: Session, campaign_id: int, samples: Sequence[NewSample]) -> None:
    """Insert samples in bulk (COPY on PostgreSQL; see :func:`~activelabel.storage.bulk.write_samples`)."""
    from activelabel.storage.bulk import write_samples

    write_samples(session, [
        (campaign_id, s.uri, s.content_hash, s.split, s.size_bytes, s.mtime_ns) for s in samples
    ])


def samples_by_uri(session: Session, campaign_id: int, uris: Iterable[str]) -> dict[str, int]:
    wanted = set(uris)
    rows = session.execute(
        select(Sample.uri, Sample.id).where(Sample.campaign_id == campaign_id)
    ).all()
    return {uri: sid for uri, sid in rows if uri in wanted}


_SAMPLE_COLUMNS = tuple(getattr(Sample, c.key) for c in Sample.__table__.columns)


def split_samples(session: Session, campaign_id: int, split: SampleSplit) -> list:
    """The split's samples in id order, as read-only rows with :class:`Sample`'s attributes
    (``id``, ``uri``, ``content_hash``, ``split``, ``duplicate_of``, ...).

    Rows, not ORM objects: a round reads the pool several times, and building tens of
    thousands of tracked ``Sample`` objects cost several times more than the query (MNIST,
    20,000 pool samples: 0.2-0.4 s -> 0.05-0.1 s of CPU per read). Change samples through
    ``session.get(Sample, row.id)``.
    """
    return list(session.execute(
        select(*_SAMPLE_COLUMNS)
        .where(Sample.campaign_id == campaign_id, Sample.split == split)
        .order_by(Sample.id)
    ))


def campaign_min_votes(campaign: Campaign) -> int:
    """The accepted answers (from distinct annotators) a sample of ``campaign`` needs before it
    counts as labeled: its stored ``annotations_per_task`` (1 when unset). Every count that
    means "labeled" passes this to :func:`resolved_labels`."""
    return max(1, int((campaign.config or {}).get("annotations_per_task", 1) or 1))


#: Marks the external id of an answer withdrawn by ``--relabel-changes`` (its image changed):
#: history, not the backend's; every reader of external ids skips it through this one mark.
WITHDRAWN_MARK = "~withdrawn-"

_EPOCH = datetime.min.replace(tzinfo=timezone.utc)


def one_vote_per_annotator(rows: Iterable[tuple]) -> dict[int, list]:
    """Each sample's votes, one per annotator: ``rows`` are ``(sample_id, annotator, value,
    updated_at, created_at, id)`` in any order; an annotator who answered a sample more than
    once (Label Studio lets a user add a second annotation to a task) votes with their latest
    answer (by ``updated_at``, else ``created_at``, then ``id``). The votes come in the order
    each annotator first answered the sample, so "ties go to the first answer" stays true.

    Returns ``sample_id -> [value, ...]`` with one value per distinct annotator. Used by
    :func:`resolved_labels` and :func:`annotation_masks`, so majority, agreement and the
    ``min_votes`` count all read the same votes."""
    chosen: dict[int, dict[str, tuple]] = defaultdict(dict)
    for sample_id, annotator, value, updated_at, created_at, row_id in sorted(rows, key=lambda r: r[5]):
        stamp = (_aware(updated_at or created_at) or _EPOCH, row_id)
        mine = chosen[sample_id]
        first = mine[annotator][0] if annotator in mine else row_id
        if annotator not in mine or stamp >= mine[annotator][1]:
            mine[annotator] = (first, stamp, value)
    return {
        sample_id: [value for _, _, value in sorted(by_annotator.values(), key=lambda v: v[0])]
        for sample_id, by_annotator in chosen.items()
    }


def resolved_labels(
    session: Session, campaign_id: int, min_votes: int = 1
) -> dict[int, ResolvedLabel]:
    """Each labeled sample's label, derived from its accepted annotations by majority vote,
    one vote per annotator (:func:`one_vote_per_annotator`: their latest accepted answer).

    A sample counts as labeled once ``min_votes`` distinct annotators gave an accepted answer
    (the campaign's annotators per task, :func:`campaign_min_votes`); one annotator answering
    twice is one vote. Seed labels (no round) always count.
    """
    seeded: set[int] = set()
    rows = []
    for sample_id, annotator, label, round_id, updated_at, created_at, row_id in session.execute(
        select(Annotation.sample_id, Annotation.annotator, Annotation.label, Annotation.round_id,
               Annotation.updated_at, Annotation.created_at, Annotation.id)
        .where(
            Annotation.campaign_id == campaign_id,
            Annotation.status == AnnotationStatus.accepted,
        )
    ):
        rows.append((sample_id, annotator, label, updated_at, created_at, row_id))
        if round_id is None:
            seeded.add(sample_id)
    return {
        sample_id: majority_vote(v)
        for sample_id, v in one_vote_per_annotator(rows).items()
        if len(v) >= min_votes or sample_id in seeded
    }


def set_aside_samples(
    session: Session, campaign_id: int, min_votes: int = 1, resolved: Iterable[int] | None = None,
) -> dict[int, list[str]]:
    """The campaign's samples *set aside* by skips, each with the annotators who skipped it (in
    the order they first answered or skipped it).

    A sample is set aside when it is not resolved (:func:`resolved_labels` with ``min_votes``),
    at least one annotator's current annotation of it is a skip, and the distinct annotators
    whose current annotation is an answer (accepted or rejected) or a skip number at least
    ``min_votes``. Why: Label Studio's default skip queue (``REQUEUE_FOR_OTHERS``) serves a
    skipped task only to annotators who have not seen it, so once ``min_votes`` annotators have
    each answered or skipped, nobody is left to make it resolve, and a round waiting for it
    would wait forever. With one annotator per task one skip sets the sample aside; with three,
    A and B answering and C skipping does; C's skip alone does not (others may still answer).

    Derived from the current rows on each call, never stored: an answer given later (the skip
    turned into an answer, another annotator) makes the sample resolved, and resolved wins.
    One annotator counts once (their latest annotation, :func:`one_vote_per_annotator`).
    Answers withdrawn by ``--relabel-changes`` (``~withdrawn-`` in the external id) are
    history and count for nothing. ``resolved``: the resolved sample ids, when the caller has
    them already.
    """
    # Most campaigns hold no skip: one cheap query says so, before any vote is read.
    skipped = set(session.scalars(select(Annotation.sample_id).distinct().where(
        Annotation.campaign_id == campaign_id, Annotation.status == AnnotationStatus.skipped)))
    if not skipped:
        return {}
    if resolved is None:
        resolved = resolved_labels(session, campaign_id, min_votes).keys()
    wanted = skipped - set(resolved)
    rows = [
        (sample_id, annotator, (annotator, status), updated_at, created_at, row_id)
        for sample_id, annotator, status, external_id, updated_at, created_at, row_id in session.execute(
            select(Annotation.sample_id, Annotation.annotator, Annotation.status, Annotation.external_id,
                   Annotation.updated_at, Annotation.created_at, Annotation.id)
            .where(Annotation.campaign_id == campaign_id)
        )
        if sample_id in wanted and WITHDRAWN_MARK not in external_id
    ]
    out: dict[int, list[str]] = {}
    for sample_id, votes in one_vote_per_annotator(rows).items():
        skippers = [who for who, status in votes if status == AnnotationStatus.skipped]
        if skippers and len(votes) >= min_votes:
            out[sample_id] = skippers
    return out


def selected_sample_ids(session: Session, campaign_id: int) -> set[int]:
    return set(session.scalars(select(Selection.sample_id).where(Selection.campaign_id == campaign_id)))


def unlabeled_pool(session: Session, campaign_id: int) -> list[Sample]:
    """Pool samples a strategy may pick, in id order: no label, not sent to annotators yet, not
    a copy of another sample, and not recorded as unreadable."""
    labeled = resolved_labels(session, campaign_id).keys()
    taken = selected_sample_ids(session, campaign_id) | set(labeled)
    unreadable = problem_uris(session, campaign_id)
    return [
        s for s in split_samples(session, campaign_id, SampleSplit.pool)
        if s.id not in taken and s.duplicate_of is None and s.uri not in unreadable
    ]


class PoolSample(NamedTuple):
    """One sample of a :class:`SampleColumns`: its id and URI."""

    id: int
    uri: str


class SampleColumns:
    """Samples as two columns: ``ids`` int64 ``[n]`` and ``uris`` (a list of ``n`` strings).

    What a round reads of a pool of millions: about 90 bytes per sample, where a row object
    with every column of ``sample`` (content hash included) costs about 600. Indexing gives a
    :class:`PoolSample` (``pool[i].id``, ``pool[i].uri``), made on demand, so code written for
    a list of rows keeps working; ``a + b`` concatenates.
    """

    __slots__ = ("ids", "uris")

    def __init__(self, ids: np.ndarray | Sequence[int], uris: list[str]) -> None:
        self.ids = np.asarray(ids, dtype=np.int64)
        self.uris = uris
        if len(self.ids) != len(uris):
            raise ValueError(f"SampleColumns: {len(self.ids)} ids but {len(uris)} URIs")

    @classmethod
    def of(cls, samples: Iterable) -> SampleColumns:
        """Columns of rows or objects with ``id`` and ``uri``."""
        rows = [(s.id, s.uri) for s in samples]
        return cls(np.array([i for i, _ in rows], dtype=np.int64), [u for _, u in rows])

    def __len__(self) -> int:
        return len(self.uris)

    def __getitem__(self, i: int) -> PoolSample:
        return PoolSample(int(self.ids[i]), self.uris[i])

    def __iter__(self):
        return (PoolSample(int(i), u) for i, u in zip(self.ids.tolist(), self.uris))

    def __add__(self, other: SampleColumns) -> SampleColumns:
        return SampleColumns(np.concatenate([self.ids, other.ids]), self.uris + other.uris)

    def take(self, positions: np.ndarray) -> SampleColumns:
        """The samples at ``positions`` (int array), in that order."""
        positions = np.asarray(positions, dtype=np.int64)
        return SampleColumns(self.ids[positions], [self.uris[p] for p in positions.tolist()])


#: Rows fetched per round trip when a pool is read as columns.
POOL_FETCH = 65_536


def unlabeled_pool_columns(session: Session, campaign_id: int) -> SampleColumns:
    """:func:`unlabeled_pool` as :class:`SampleColumns` (same samples, same id order).

    Reads only ``id`` and ``uri``, :data:`POOL_FETCH` rows at a time, so a million-sample pool
    never exists as a million row objects.
    """
    labeled = resolved_labels(session, campaign_id).keys()
    taken = np.fromiter(selected_sample_ids(session, campaign_id) | set(labeled), dtype=np.int64)
    unreadable = problem_uris(session, campaign_id)
    # Core on the session's connection: the ORM's result machinery costs 1.7x the time here.
    result = session.connection().execute(
        select(Sample.id, Sample.uri)
        .where(Sample.campaign_id == campaign_id, Sample.split == SampleSplit.pool, Sample.duplicate_of.is_(None))
        .order_by(Sample.id)
        .execution_options(yield_per=POOL_FETCH)
    )
    ids: list[np.ndarray] = []
    uris: list[str] = []
    for part in result.partitions():
        ids.append(np.fromiter((row[0] for row in part), dtype=np.int64, count=len(part)))
        uris.extend(row[1] for row in part)
    pool = SampleColumns(np.concatenate(ids) if ids else np.zeros(0, np.int64), uris)
    keep = ~np.isin(pool.ids, taken)
    if unreadable:
        keep &= np.fromiter((u not in unreadable for u in pool.uris), dtype=bool, count=len(pool))
    return pool if keep.all() else pool.take(np.flatnonzero(keep))


def problem_uris(session: Session, campaign_id: int) -> set[str]:
    """URIs of the campaign's files recorded as unreadable."""
    return set(session.scalars(select(SampleProblem.uri).where(SampleProblem.campaign_id == campaign_id)))


def record_problems(session: Session, campaign_id: int, problems: Iterable[tuple[str, str]]) -> int:
    """Store (uri, reason) for unreadable files not recorded yet; returns how many were new."""
    known = problem_uris(session, campaign_id)
    fresh = {uri: reason for uri, reason in problems if uri not in known}
    session.add_all(SampleProblem(campaign_id=campaign_id, uri=u, reason=r) for u, r in fresh.items())
    return len(fresh)


def add_annotations(session: Session, campaign_id: int, annotations: Sequence[NewAnnotation]) -> int:
    """Insert annotations not stored yet (keyed by source + external id); returns how many were new."""
    if not annotations:
        return 0
    rows = [
        {
            "campaign_id": campaign_id,
            "sample_id": a.sample_id,
            "round_id": a.round_id,
            "annotator": a.annotator,
            "label": a.label,
            "source": a.source,
            "external_id": a.external_id,
            "status": a.status,
            "reason": a.reason,
            "updated_at": a.updated_at,
            "mask": a.mask,
        }
        for a in annotations
    ]
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        dialect_insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        statement = dialect_insert(Annotation).on_conflict_do_nothing(
            index_elements=["campaign_id", "source", "external_id"]
        )
        result = session.execute(statement.returning(Annotation.id), rows)
        return len(result.all())
    existing = set(
        session.execute(
            select(Annotation.source, Annotation.external_id).where(
                Annotation.campaign_id == campaign_id,
                Annotation.external_id.in_([r["external_id"] for r in rows]),
            )
        ).tuples()
    )
    fresh = []
    for row in rows:
        key = (row["source"], row["external_id"])
        if key not in existing:
            existing.add(key)
            fresh.append(row)
    if fresh:
        session.execute(insert(Annotation), fresh)
    return len(fresh)


def insert_scores(session: Session, rows: Sequence[dict]) -> int:
    """Bulk-insert score rows given as dicts (see ``bulk.write_scores`` for the fast path)."""
    return write_scores(session, [tuple(row[c] for c in SCORE_COLUMNS) for row in rows])


def round_scores(session: Session, round_id: int, strategy: str) -> list[Score]:
    return list(
        session.scalars(
            select(Score)
            .where(Score.round_id == round_id, Score.strategy == strategy)
            .order_by(Score.sample_id)
        )
    )


def round_score_values(session: Session, round_id: int, strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """The round's scores as two columns in sample id order: ids int64 ``[n]``, values float64
    ``[n]`` (what a selection needs of a million scores: 16 bytes each)."""
    result = session.connection().execute(
        select(Score.sample_id, Score.value)
        .where(Score.round_id == round_id, Score.strategy == strategy)
        .order_by(Score.sample_id)
        .execution_options(yield_per=POOL_FETCH)
    )
    ids: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for part in result.partitions():
        ids.append(np.fromiter((row[0] for row in part), dtype=np.int64, count=len(part)))
        values.append(np.fromiter((row[1] for row in part), dtype=np.float64, count=len(part)))
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    return np.concatenate(ids), np.concatenate(values)


def round_scores_of(session: Session, round_id: int, strategy: str, sample_ids: Sequence[int]) -> list[Score]:
    """The round's :class:`Score` rows of ``sample_ids``, in that order (ids without a score
    are left out)."""
    found: dict[int, Score] = {}
    wanted = list(sample_ids)
    for start in range(0, len(wanted), 1000):
        found.update((s.sample_id, s) for s in session.scalars(
            select(Score).where(Score.round_id == round_id, Score.strategy == strategy,
                                Score.sample_id.in_(wanted[start:start + 1000]))))
    return [found[i] for i in wanted if i in found]


def round_selections(session: Session, round_id: int) -> list[Selection]:
    return list(
        session.scalars(select(Selection).where(Selection.round_id == round_id).order_by(Selection.rank))
    )


def latest_round(session: Session, campaign_id: int) -> Round | None:
    return session.scalar(
        select(Round).where(Round.campaign_id == campaign_id).order_by(Round.index.desc()).limit(1)
    )


def count_rounds(session: Session, campaign_id: int, status: RoundStatus | None = None) -> int:
    query = select(func.count()).select_from(Round).where(Round.campaign_id == campaign_id)
    if status is not None:
        query = query.where(Round.status == status)
    return int(session.scalar(query) or 0)


def move_round(session: Session, round_id: int, expected: RoundStatus, new: RoundStatus, **values) -> bool:
    """Compare-and-set the round's status; False when another process moved it first."""
    result = session.execute(
        update(Round)
        .where(Round.id == round_id, Round.status == expected)
        .values(status=new, **values)
    )
    return result.rowcount == 1


IN_CHUNK = 900  # ids per IN (...) list: below SQLite's bound-parameter limit


@dataclass(frozen=True)
class ReconcileResult:
    """What one reconciliation changed: rows inserted, edited in place, deleted."""

    new: int
    edited: int
    deleted: int
    new_rejected: list[NewAnnotation]
    # Of ``new``: skips (status skipped), which are no answers.
    new_skipped: int = 0


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands timezone-aware columns back naive (UTC): compare like with like.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def reconcile_annotations(
    session: Session,
    campaign_id: int,
    source: str,
    sample_ids: Iterable[int],
    current: Sequence[NewAnnotation],
) -> ReconcileResult:
    """Make the stored annotations of ``sample_ids`` (from ``source``) equal ``current``.

    ``current`` is everything the backend holds now for those samples (one entry per
    annotation, keyed by ``external_id``). An annotation not stored yet is inserted; one whose
    label, status or mask differs is updated in place and the old version written to
    ``annotation_change`` (kind ``edited``; an edited mask is recorded with its label
    ``<mask>`` and the replaced mask's PNG bytes in ``old_mask``); a stored one missing from
    ``current`` is deleted and recorded (kind ``deleted``, its mask in ``old_mask`` too).
    Answers withdrawn by ``--relabel-changes`` (external id with ``~withdrawn-``) are history
    and left alone. Samples outside ``sample_ids`` are left alone, so the caller passes only samples whose
    every annotation it has read. Idempotent.
    """
    wanted = sorted(set(sample_ids))
    stored: dict[str, Annotation] = {}
    for start in range(0, len(wanted), IN_CHUNK):
        for row in session.scalars(
            select(Annotation).where(
                Annotation.campaign_id == campaign_id,
                Annotation.source == source,
                Annotation.sample_id.in_(wanted[start : start + IN_CHUNK]),
            )
        ):
            if WITHDRAWN_MARK not in row.external_id:  # withdrawn by --relabel-changes: history, not the backend's
                stored[row.external_id] = row
    now = utcnow()
    fresh: list[NewAnnotation] = []
    edited = deleted = 0
    seen: set[str] = set()
    for item in current:
        if item.external_id in seen:
            continue
        seen.add(item.external_id)
        row = stored.get(item.external_id)
        if row is None:
            fresh.append(item)
            continue
        if row.label == item.label and row.status == item.status and row.mask == item.mask:
            if item.updated_at is not None and _aware(row.updated_at) != _aware(item.updated_at):
                row.updated_at = item.updated_at  # re-submitted unchanged: no history entry
            continue
        session.add(AnnotationChange(
            campaign_id=campaign_id, sample_id=row.sample_id, round_id=row.round_id, source=source,
            external_id=row.external_id, annotator=row.annotator, kind=AnnotationChangeKind.edited,
            old_label=row.label, old_status=row.status, old_updated_at=row.updated_at,
            new_label=item.label, new_status=item.status, new_updated_at=item.updated_at,
            changed_at=now, old_mask=row.mask,
        ))
        row.label, row.status, row.reason, row.mask = item.label, item.status, item.reason, item.mask
        row.annotator, row.updated_at = item.annotator, item.updated_at
        edited += 1
    for external_id, row in stored.items():
        if external_id in seen:
            continue
        session.add(AnnotationChange(
            campaign_id=campaign_id, sample_id=row.sample_id, round_id=row.round_id, source=source,
            external_id=row.external_id, annotator=row.annotator, kind=AnnotationChangeKind.deleted,
            old_label=row.label, old_status=row.status, old_updated_at=row.updated_at,
            changed_at=now, old_mask=row.mask,
        ))
        session.delete(row)
        deleted += 1
    session.flush()
    new = add_annotations(session, campaign_id, fresh)
    rejected = [a for a in fresh if a.status == AnnotationStatus.rejected]
    skipped = sum(a.status == AnnotationStatus.skipped for a in fresh)
    return ReconcileResult(new=new, edited=edited, deleted=deleted, new_rejected=rejected, new_skipped=skipped)


def annotation_changes(session: Session, campaign_id: int) -> list[AnnotationChange]:
    """The campaign's edit/deletion history, oldest first."""
    return list(session.scalars(
        select(AnnotationChange)
        .where(AnnotationChange.campaign_id == campaign_id)
        .order_by(AnnotationChange.id)
    ))


def changed_samples_per_round(session: Session, campaign_id: int) -> dict[int | None, int]:
    """``round id -> how many of its samples had an annotation edited or deleted``."""
    rows = session.execute(
        select(AnnotationChange.round_id, func.count(func.distinct(AnnotationChange.sample_id)))
        .where(AnnotationChange.campaign_id == campaign_id)
        .group_by(AnnotationChange.round_id)
    ).all()
    return {round_id: int(count) for round_id, count in rows}


def get_sync_cursor(session: Session, campaign_id: int, source: str) -> str | None:
    row = session.get(SyncCursor, (campaign_id, source))
    return None if row is None else row.value


def set_sync_cursor(session: Session, campaign_id: int, source: str, value: str) -> None:
    row = session.get(SyncCursor, (campaign_id, source))
    if row is None:
        session.add(SyncCursor(campaign_id=campaign_id, source=source, value=value, synced_at=utcnow()))
    else:
        row.value, row.synced_at = value, utcnow()


def outstanding_samples(session: Session, campaign_id: int, min_votes: int = 1) -> list[Sample]:
    """Selected samples (any round) that are not resolved yet: still out with annotators."""
    resolved = resolved_labels(session, campaign_id, min_votes).keys()
    rows = session.scalars(
        select(Sample).join(Selection, Selection.sample_id == Sample.id)
        .where(Selection.campaign_id == campaign_id)
        .order_by(Sample.id)
    )
    return [s for s in rows if s.id not in resolved]


def annotation_masks(session: Session, campaign_id: int) -> dict[int, list[bytes]]:
    """Each sample's accepted annotation masks (PNG bytes), one per annotator (their latest,
    :func:`one_vote_per_annotator`), in the order the annotators first answered: the votes a
    segmentation label is resolved from (a per-pixel majority; see ``annotation.mask_votes``)."""
    rows = session.execute(
        select(Annotation.sample_id, Annotation.annotator, Annotation.mask, Annotation.updated_at,
               Annotation.created_at, Annotation.id)
        .where(Annotation.campaign_id == campaign_id, Annotation.status == AnnotationStatus.accepted,
               Annotation.mask.is_not(None))
    )
    return one_vote_per_annotator(rows)
