"""Queries and writes the pipeline needs, each a small function over a Session.

Writes that must never double are guarded by the schema's unique constraints; bulk writes use
``insert()`` with lists of dicts (executemany) in large batches.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from activelabel.storage.bulk import SCORE_COLUMNS, write_scores
from activelabel.storage.labels import ResolvedLabel, majority_vote
from activelabel.storage.models import (
    Annotation,
    AnnotationStatus,
    Campaign,
    Round,
    RoundStatus,
    Sample,
    SampleProblem,
    SampleSplit,
    Score,
    Selection,
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


def get_campaign(session: Session, name: str) -> Campaign | None:
    return session.scalar(select(Campaign).where(Campaign.name == name))


def add_samples(session: Session, campaign_id: int, samples: Sequence[NewSample]) -> None:
    rows = [
        {"campaign_id": campaign_id, "uri": s.uri, "content_hash": s.content_hash, "split": s.split,
         "size_bytes": s.size_bytes, "mtime_ns": s.mtime_ns}
        for s in samples
    ]
    for start in range(0, len(rows), BULK_CHUNK):
        session.execute(insert(Sample), rows[start : start + BULK_CHUNK])


def samples_by_uri(session: Session, campaign_id: int, uris: Iterable[str]) -> dict[str, int]:
    wanted = set(uris)
    rows = session.execute(
        select(Sample.uri, Sample.id).where(Sample.campaign_id == campaign_id)
    ).all()
    return {uri: sid for uri, sid in rows if uri in wanted}


def split_samples(session: Session, campaign_id: int, split: SampleSplit) -> list[Sample]:
    return list(
        session.scalars(
            select(Sample)
            .where(Sample.campaign_id == campaign_id, Sample.split == split)
            .order_by(Sample.id)
        )
    )


def resolved_labels(
    session: Session, campaign_id: int, min_votes: int = 1
) -> dict[int, ResolvedLabel]:
    """Each labeled sample's label, derived from its accepted annotations by majority vote.

    A sample counts as labeled once it has ``min_votes`` accepted answers (the campaign's
    annotators per task); seed labels (no round) always count.
    """
    votes: dict[int, list[str]] = defaultdict(list)
    seeded: set[int] = set()
    rows = session.execute(
        select(Annotation.sample_id, Annotation.label, Annotation.round_id)
        .where(
            Annotation.campaign_id == campaign_id,
            Annotation.status == AnnotationStatus.accepted,
        )
        .order_by(Annotation.id)
    )
    for sample_id, label, round_id in rows:
        votes[sample_id].append(label)
        if round_id is None:
            seeded.add(sample_id)
    return {
        sample_id: majority_vote(v)
        for sample_id, v in votes.items()
        if len(v) >= min_votes or sample_id in seeded
    }


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
