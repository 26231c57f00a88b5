"""Skips set a sample aside (trial 16 F2): the rule of ``repository.set_aside_samples`` on rows
written by hand, against a real database (SQLite, and PostgreSQL if set up). A skip is never a
vote, and a later answer that resolves the sample wins."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy import Engine

from activelabel.storage import AnnotationStatus, SampleSplit, session_scope
from activelabel.storage.repository import (
    NewAnnotation,
    NewSample,
    add_annotations,
    add_samples,
    reconcile_annotations,
    resolved_labels,
    samples_by_uri,
    set_aside_samples,
)


def _at(minute: int) -> datetime:
    return datetime(2026, 12, 1, 9, minute, tzinfo=timezone.utc)


def _row(sample_id: int, who: str, ext: str, round_id: int, status: AnnotationStatus, *, minute: int,
         label: str = "cat") -> NewAnnotation:
    skipped = status == AnnotationStatus.skipped
    return NewAnnotation(
        sample_id=sample_id, annotator=who, label="" if skipped else label, source="labelstudio",
        external_id=ext, round_id=round_id, status=status, updated_at=_at(minute),
        reason="skipped in Label Studio" if skipped else None,
    )


A, R, S = AnnotationStatus.accepted, AnnotationStatus.rejected, AnnotationStatus.skipped


def _samples(engine: Engine, cid: int, names: list[str]) -> dict[str, int]:
    with session_scope(engine) as session:
        add_samples(session, cid, [NewSample(u, f"h-{u}", SampleSplit.pool) for u in names])
        return samples_by_uri(session, cid, names)


def test_one_annotator_per_task_a_skip_sets_the_sample_aside_at_once(
    engine: Engine, make_campaign: Callable[..., int], make_round: Callable[..., int]
) -> None:
    cid = make_campaign()
    rid = make_round(cid, 1)
    ids = _samples(engine, cid, ["skipped", "answered", "rejected", "none"])
    with session_scope(engine) as session:
        add_annotations(session, cid, [
            _row(ids["skipped"], "anna", "1", rid, S, minute=1),
            _row(ids["answered"], "anna", "2", rid, A, minute=2),
            _row(ids["rejected"], "anna", "3", rid, R, minute=3, label="zebra"),
        ])
    with session_scope(engine) as session:
        assert set_aside_samples(session, cid, 1) == {ids["skipped"]: ["anna"]}
        # A skip is never a vote: only the answered sample is resolved.
        assert set(resolved_labels(session, cid, 1)) == {ids["answered"]}


def test_three_per_task_set_aside_only_once_three_annotators_answered_or_skipped(
    engine: Engine, make_campaign: Callable[..., int], make_round: Callable[..., int]
) -> None:
    cid = make_campaign()
    rid = make_round(cid, 1)
    ids = _samples(engine, cid, ["two-and-skip", "skip-alone", "two-skips", "reject-and-skips", "skip-twice"])
    with session_scope(engine) as session:
        add_annotations(session, cid, [
            # A and B answered, C skipped: nobody is left -> set aside.
            _row(ids["two-and-skip"], "a", "1", rid, A, minute=1),
            _row(ids["two-and-skip"], "b", "2", rid, A, minute=2, label="dog"),
            _row(ids["two-and-skip"], "c", "3", rid, S, minute=3),
            # Only C skipped so far: others may still answer -> still out.
            _row(ids["skip-alone"], "c", "4", rid, S, minute=1),
            # Two skips of three: still out.
            _row(ids["two-skips"], "a", "5", rid, S, minute=1),
            _row(ids["two-skips"], "b", "6", rid, S, minute=2),
            # A rejected answer counts as answered (not as a vote): set aside.
            _row(ids["reject-and-skips"], "a", "7", rid, R, minute=1, label="zebra"),
            _row(ids["reject-and-skips"], "b", "8", rid, S, minute=2),
            _row(ids["reject-and-skips"], "c", "9", rid, A, minute=3),
            # One annotator skipping twice is one annotator: still out.
            _row(ids["skip-twice"], "a", "10", rid, S, minute=1),
            _row(ids["skip-twice"], "a", "11", rid, S, minute=2),
            _row(ids["skip-twice"], "b", "12", rid, A, minute=3),
        ])
    with session_scope(engine) as session:
        assert set_aside_samples(session, cid, 3) == {ids["two-and-skip"]: ["c"], ids["reject-and-skips"]: ["b"]}
        assert resolved_labels(session, cid, 3) == {}


def test_an_answer_that_resolves_the_sample_wins_and_a_skip_turned_answer_is_history(
    engine: Engine, make_campaign: Callable[..., int], make_round: Callable[..., int]
) -> None:
    from activelabel.storage.models import AnnotationChangeKind
    from activelabel.storage.repository import annotation_changes

    cid = make_campaign()
    rid = make_round(cid, 1)
    ids = _samples(engine, cid, ["s"])
    sid = ids["s"]
    with session_scope(engine) as session:
        first = reconcile_annotations(session, cid, "labelstudio", [sid], [
            _row(sid, "a", "1", rid, A, minute=1), _row(sid, "b", "2", rid, S, minute=2)])
    assert (first.new, first.new_skipped, first.edited) == (2, 1, 0)
    with session_scope(engine) as session:
        assert set_aside_samples(session, cid, 2) == {sid: ["b"]}
    # b turns the skip into an answer (same annotation id): an edit, the skip kept as history.
    with session_scope(engine) as session:
        turned = reconcile_annotations(session, cid, "labelstudio", [sid], [
            _row(sid, "a", "1", rid, A, minute=1), _row(sid, "b", "2", rid, A, minute=5)])
    assert (turned.new, turned.new_skipped, turned.edited, turned.deleted) == (0, 0, 1, 0)
    with session_scope(engine) as session:
        assert set_aside_samples(session, cid, 2) == {}
        assert resolved_labels(session, cid, 2)[sid].votes == 2
        history = [(c.kind, c.old_status, c.old_label, c.new_status, c.new_label)
                   for c in annotation_changes(session, cid)]
    assert history == [(AnnotationChangeKind.edited, S, "", A, "cat")]
    # And back: the answer turned into a skip again sets the sample aside again; a deleted
    # skip goes like a deleted answer (a row less, history kept), and the sample is out again.
    with session_scope(engine) as session:
        reconcile_annotations(session, cid, "labelstudio", [sid], [
            _row(sid, "a", "1", rid, A, minute=1), _row(sid, "b", "2", rid, S, minute=7)])
        assert set_aside_samples(session, cid, 2) == {sid: ["b"]}
    with session_scope(engine) as session:
        gone = reconcile_annotations(session, cid, "labelstudio", [sid], [_row(sid, "a", "1", rid, A, minute=1)])
        assert gone.deleted == 1
        assert set_aside_samples(session, cid, 2) == {}
        kinds = [(c.kind, c.old_status) for c in annotation_changes(session, cid)]
    assert kinds[-1] == (AnnotationChangeKind.deleted, S)


def test_a_withdrawn_answer_counts_for_nothing(
    engine: Engine, make_campaign: Callable[..., int], make_round: Callable[..., int]
) -> None:
    cid = make_campaign()
    rid = make_round(cid, 1)
    ids = _samples(engine, cid, ["s"])
    with session_scope(engine) as session:
        add_annotations(session, cid, [
            _row(ids["s"], "a", "1~withdrawn-1", rid, R, minute=1),
            _row(ids["s"], "b", "2", rid, S, minute=2),
        ])
    with session_scope(engine) as session:
        assert set_aside_samples(session, cid, 2) == {}
        assert set_aside_samples(session, cid, 1) == {ids["s"]: ["b"]}
