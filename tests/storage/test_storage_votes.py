"""One vote per annotator: an annotator answering a sample twice is one vote, their latest
(trial7 item 1). Against a real database (SQLite, and PostgreSQL if set up)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy import Engine

from activelabel.storage import AnnotationStatus, SampleSplit, session_scope
from activelabel.storage.labels import ResolvedLabel
from activelabel.storage.repository import (
    NewAnnotation,
    NewSample,
    add_annotations,
    add_samples,
    annotation_masks,
    outstanding_samples,
    resolved_labels,
    samples_by_uri,
)
from activelabel.storage.models import Selection


def _at(minute: int) -> datetime:
    return datetime(2026, 11, 30, 4, minute, tzinfo=timezone.utc)


def _answer(sample_id, who, label, ext, round_id, *, minute, rejected=False, mask=None) -> NewAnnotation:
    return NewAnnotation(
        sample_id=sample_id, annotator=who, label=label, source="labelstudio", external_id=ext,
        round_id=round_id, updated_at=_at(minute), mask=mask,
        status=AnnotationStatus.rejected if rejected else AnnotationStatus.accepted,
    )


def test_one_annotator_answering_twice_is_one_vote(
    engine: Engine, make_campaign: Callable[..., int], make_round: Callable[..., int]
) -> None:
    cid = make_campaign()
    rid = make_round(cid, 1)
    with session_scope(engine) as session:
        add_samples(session, cid, [NewSample(u, f"h-{u}", SampleSplit.pool) for u in ("twice", "two", "late")])
        ids = samples_by_uri(session, cid, ["twice", "two", "late"])
        session.add_all([Selection(campaign_id=cid, round_id=rid, sample_id=i, rank=r, score=0.5,
                                   predicted_label="cat", confidence=0.5)
                         for r, i in enumerate(ids.values())])
        add_annotations(session, cid, [
            # anna answers "twice" two times: one vote, her latest ("dog"), whatever the id order.
            _answer(ids["twice"], "anna", "dog", "1", rid, minute=9),
            _answer(ids["twice"], "anna", "cat", "2", rid, minute=5),
            # "two": anna then ben, a 1-1 tie -> anna's (first to answer), even after anna
            # answers again (her second answer replaces her vote but keeps her place).
            _answer(ids["two"], "anna", "cat", "3", rid, minute=1),
            _answer(ids["two"], "ben", "dog", "4", rid, minute=2),
            _answer(ids["two"], "anna", "cat", "5", rid, minute=3),
            # "late": ben's accepted answer then a rejected one by ben: his accepted one stays
            # his only vote (rejected rows never vote).
            _answer(ids["late"], "ben", "cat", "6", rid, minute=1),
            _answer(ids["late"], "ben", "zebra", "7", rid, minute=2, rejected=True),
        ])
    with session_scope(engine) as session:
        two_needed = resolved_labels(session, cid, min_votes=2)
        one_needed = resolved_labels(session, cid, min_votes=1)
        waiting = {s.id for s in outstanding_samples(session, cid, min_votes=2)}
    # Two accepted rows by anna alone do not resolve a sample that needs two annotators.
    assert two_needed == {ids["two"]: ResolvedLabel("cat", 2, 0.5)}
    assert one_needed == {
        ids["twice"]: ResolvedLabel("dog", 1, 1.0),
        ids["two"]: ResolvedLabel("cat", 2, 0.5),
        ids["late"]: ResolvedLabel("cat", 1, 1.0),
    }
    assert waiting == {ids["twice"], ids["late"]}

    # ben answers "twice": now two annotators, a 1-1 tie that goes to anna (first to answer).
    with session_scope(engine) as session:
        add_annotations(session, cid, [_answer(ids["twice"], "ben", "cat", "8", rid, minute=10)])
    with session_scope(engine) as session:
        assert resolved_labels(session, cid, min_votes=2)[ids["twice"]] == ResolvedLabel("dog", 2, 0.5)


def test_masks_are_one_per_annotator_too(
    engine: Engine, make_campaign: Callable[..., int], make_round: Callable[..., int]
) -> None:
    cid = make_campaign()
    rid = make_round(cid, 1)
    with session_scope(engine) as session:
        add_samples(session, cid, [NewSample("img", "h-img", SampleSplit.pool)])
        sid = samples_by_uri(session, cid, ["img"])["img"]
        add_annotations(session, cid, [
            _answer(sid, "anna", "__mask__", "1", rid, minute=1, mask=b"anna-old"),
            _answer(sid, "ben", "__mask__", "2", rid, minute=2, mask=b"ben"),
            _answer(sid, "anna", "__mask__", "3", rid, minute=3, mask=b"anna-new"),
        ])
    with session_scope(engine) as session:
        assert annotation_masks(session, cid) == {sid: [b"anna-new", b"ben"]}
