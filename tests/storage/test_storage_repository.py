"""Repository queries and writes against a real database (SQLite, and PostgreSQL if set up)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError

from activelabel.storage import (
    Annotation,
    AnnotationStatus,
    Round,
    RoundStatus,
    Sample,
    SampleSplit,
    Score,
    Selection,
    session_scope,
)
from activelabel.storage.labels import ResolvedLabel
from activelabel.storage.repository import (
    NewAnnotation,
    NewSample,
    add_annotations,
    add_samples,
    count_rounds,
    get_campaign,
    insert_scores,
    latest_round,
    move_round,
    resolved_labels,
    round_scores,
    round_selections,
    samples_by_uri,
    selected_sample_ids,
    split_samples,
    unlabeled_pool,
)


def _count(engine: Engine, model) -> int:
    with session_scope(engine) as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def _add(engine: Engine, campaign_id: int, uris: list[str], split=SampleSplit.pool) -> dict[str, int]:
    with session_scope(engine) as session:
        add_samples(session, campaign_id, [NewSample(u, f"hash-{u}", split) for u in uris])
        return samples_by_uri(session, campaign_id, uris)


def _select(engine: Engine, campaign_id: int, round_id: int, sample_id: int, rank: int) -> None:
    with session_scope(engine) as session:
        session.add(
            Selection(
                campaign_id=campaign_id,
                round_id=round_id,
                sample_id=sample_id,
                rank=rank,
                score=0.5,
                predicted_label="cat",
                confidence=0.6,
            )
        )


def _vote(sample_id: int, label: str, ext: str, *, source: str = "sim", rejected: bool = False) -> NewAnnotation:
    return NewAnnotation(
        sample_id=sample_id,
        annotator=f"annotator-{ext}",
        label=label,
        source=source,
        external_id=ext,
        status=AnnotationStatus.rejected if rejected else AnnotationStatus.accepted,
        reason="blurry" if rejected else None,
    )


# --- campaigns and samples ------------------------------------------------------------------


def test_get_campaign(engine: Engine, make_campaign: Callable[..., int]) -> None:
    cid = make_campaign("alpha", labels=["0", "1"])
    with session_scope(engine) as session:
        campaign = get_campaign(session, "alpha")
        assert campaign is not None
        assert (campaign.id, campaign.labels, campaign.config) == (cid, ["0", "1"], {"batch": 10})
        assert campaign.task_kind == "classification"
        assert campaign.created_at is not None
        assert get_campaign(session, "beta") is None


def test_add_samples_and_samples_by_uri(engine: Engine, make_campaign: Callable[..., int]) -> None:
    cid = make_campaign("a")
    other = make_campaign("b")
    with session_scope(engine) as session:
        add_samples(
            session,
            cid,
            [
                NewSample("u/0", "h0", SampleSplit.pool),
                NewSample("u/1", "h1", SampleSplit.pool),
                NewSample("u/2", "h2", SampleSplit.test),
            ],
        )
        add_samples(session, other, [NewSample("u/0", "h0", SampleSplit.pool)])
    with session_scope(engine) as session:
        ids = samples_by_uri(session, cid, ["u/0", "u/2", "u/missing"])
        assert set(ids) == {"u/0", "u/2"}  # unknown uris are left out
        everything = samples_by_uri(session, cid, ["u/0", "u/1", "u/2"])
        assert len(set(everything.values())) == 3
        other_ids = samples_by_uri(session, other, ["u/0"])
        assert other_ids["u/0"] != everything["u/0"]  # same uri, another campaign, another row
        pool = split_samples(session, cid, SampleSplit.pool)
        assert [(s.uri, s.content_hash, s.split) for s in pool] == [
            ("u/0", "h0", SampleSplit.pool),
            ("u/1", "h1", SampleSplit.pool),
        ]
        assert [s.uri for s in split_samples(session, cid, SampleSplit.test)] == ["u/2"]
    assert _count(engine, Sample) == 4


def test_add_no_samples_is_a_no_op(engine: Engine, make_campaign: Callable[..., int]) -> None:
    cid = make_campaign()
    with session_scope(engine) as session:
        add_samples(session, cid, [])
        assert samples_by_uri(session, cid, ["x"]) == {}


def test_duplicate_uri_in_a_campaign_is_rejected(engine: Engine, make_campaign: Callable[..., int]) -> None:
    cid = make_campaign()
    _add(engine, cid, ["dup"])
    with pytest.raises(IntegrityError):
        _add(engine, cid, ["dup"])


# --- annotations and labels -----------------------------------------------------------------


def test_add_annotations_is_idempotent(engine: Engine, make_campaign: Callable[..., int]) -> None:
    cid = make_campaign()
    ids = _add(engine, cid, ["s0", "s1"])
    batch = [_vote(ids["s0"], "cat", "e1"), _vote(ids["s0"], "dog", "e2"), _vote(ids["s1"], "cat", "e3")]
    with session_scope(engine) as session:
        assert add_annotations(session, cid, batch) == 3
    assert _count(engine, Annotation) == 3

    with session_scope(engine) as session:
        assert add_annotations(session, cid, batch) == 0
    assert _count(engine, Annotation) == 3

    # One old, one new: only the new one counts and is stored.
    with session_scope(engine) as session:
        assert add_annotations(session, cid, [batch[0], _vote(ids["s1"], "dog", "e4")]) == 1
    assert _count(engine, Annotation) == 4

    with session_scope(engine) as session:
        rows = session.execute(
            select(Annotation.external_id, Annotation.label, Annotation.annotator).order_by(Annotation.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("e1", "cat", "annotator-e1"),
        ("e2", "dog", "annotator-e2"),
        ("e3", "cat", "annotator-e3"),
        ("e4", "dog", "annotator-e4"),
    ]


def test_add_annotations_key_is_source_plus_external_id(
    engine: Engine, make_campaign: Callable[..., int]
) -> None:
    cid = make_campaign()
    ids = _add(engine, cid, ["s0"])
    with session_scope(engine) as session:
        # Same external id from two backends: two different annotations.
        n = add_annotations(
            session,
            cid,
            [_vote(ids["s0"], "cat", "7", source="sim"), _vote(ids["s0"], "cat", "7", source="labelstudio")],
        )
    assert n == 2
    assert _count(engine, Annotation) == 2


def test_add_annotations_duplicate_within_one_call_counts_once(
    engine: Engine, make_campaign: Callable[..., int]
) -> None:
    cid = make_campaign()
    ids = _add(engine, cid, ["s0"])
    with session_scope(engine) as session:
        n = add_annotations(session, cid, [_vote(ids["s0"], "cat", "x"), _vote(ids["s0"], "dog", "x")])
    assert n == 1
    with session_scope(engine) as session:
        assert list(session.scalars(select(Annotation.label))) == ["cat"]  # first one kept


def test_add_annotations_empty(engine: Engine, make_campaign: Callable[..., int]) -> None:
    cid = make_campaign()
    with session_scope(engine) as session:
        assert add_annotations(session, cid, []) == 0


def test_add_annotations_stores_status_reason_and_round(
    engine: Engine, make_campaign: Callable[..., int], make_round: Callable[..., int]
) -> None:
    cid = make_campaign()
    rid = make_round(cid)
    ids = _add(engine, cid, ["s0"])
    vote = NewAnnotation(
        ids["s0"], "ann", "cat", "sim", "r1", round_id=rid, status=AnnotationStatus.rejected, reason="blurry"
    )
    with session_scope(engine) as session:
        assert add_annotations(session, cid, [vote]) == 1
    with session_scope(engine) as session:
        row = session.scalar(select(Annotation))
        assert (row.round_id, row.status, row.reason, row.sample_id) == (
            rid,
            AnnotationStatus.rejected,
            "blurry",
            ids["s0"],
        )


def test_resolved_labels_majority_and_rejections(engine: Engine, make_campaign: Callable[..., int]) -> None:
    cid = make_campaign()
    other = make_campaign("other")
    ids = _add(engine, cid, ["maj", "rej", "mixed", "tie", "none"])
    other_ids = _add(engine, other, ["maj"])
    with session_scope(engine) as session:
        add_annotations(
            session,
            cid,
            [
                # maj: cat, dog, cat -> cat, 3 votes, 2/3
                _vote(ids["maj"], "cat", "1"),
                _vote(ids["maj"], "dog", "2"),
                _vote(ids["maj"], "cat", "3"),
                # rej: only a rejected annotation -> no label at all
                _vote(ids["rej"], "cat", "4", rejected=True),
                # mixed: accepted dog, two rejected cats -> dog, 1 vote, 1.0
                _vote(ids["mixed"], "cat", "5", rejected=True),
                _vote(ids["mixed"], "dog", "6"),
                _vote(ids["mixed"], "cat", "7", rejected=True),
                # tie: dog then cat -> dog (first stored), 2 votes, 1/2
                _vote(ids["tie"], "dog", "8"),
                _vote(ids["tie"], "cat", "9"),
            ],
        )
        add_annotations(session, other, [_vote(other_ids["maj"], "dog", "1")])
    with session_scope(engine) as session:
        labels = resolved_labels(session, cid)
        other_labels = resolved_labels(session, other)
    assert labels == {
        ids["maj"]: ResolvedLabel("cat", 3, pytest.approx(2 / 3)),
        ids["mixed"]: ResolvedLabel("dog", 1, 1.0),
        ids["tie"]: ResolvedLabel("dog", 2, 0.5),
    }
    assert other_labels == {other_ids["maj"]: ResolvedLabel("dog", 1, 1.0)}


# --- pool, selections, scores, rounds -------------------------------------------------------


def test_unlabeled_pool_excludes_labeled_selected_and_test(
    engine: Engine, make_campaign: Callable[..., int], make_round: Callable[..., int]
) -> None:
    cid = make_campaign()
    rid = make_round(cid)
    pool = _add(engine, cid, [f"p{i}" for i in range(6)])
    _add(engine, cid, ["t0", "t1"], split=SampleSplit.test)
    with session_scope(engine) as session:
        add_annotations(
            session,
            cid,
            [
                _vote(pool["p1"], "cat", "a"),  # labeled -> out
                _vote(pool["p3"], "cat", "b", rejected=True),  # only rejected -> still unlabeled
            ],
        )
    _select(engine, cid, rid, pool["p2"], rank=0)  # sent to annotators -> out
    with session_scope(engine) as session:
        remaining = unlabeled_pool(session, cid)
        assert [s.uri for s in remaining] == ["p0", "p3", "p4", "p5"]
        assert [s.id for s in remaining] == sorted(s.id for s in remaining)
        assert selected_sample_ids(session, cid) == {pool["p2"]}


def test_insert_scores_bulk(
    engine: Engine, make_campaign: Callable[..., int], make_round: Callable[..., int]
) -> None:
    n = 50_000
    cid = make_campaign()
    rid = make_round(cid)
    ids = _add(engine, cid, [f"s{i}" for i in range(n)])
    sample_ids = sorted(ids.values())
    rows = [
        {
            "round_id": rid,
            "sample_id": sid,
            "strategy": "bald",
            "value": i / n,
            "predicted_class": i % 10,
            "confidence": 0.5,
        }
        for i, sid in enumerate(sample_ids)
    ]
    with session_scope(engine) as session:
        insert_scores(session, rows)  # more than one BULK_CHUNK in a single call
    assert _count(engine, Score) == n
    with session_scope(engine) as session:
        total, distinct, lowest, highest, value_sum, class_sum = session.execute(
            select(
                func.count(),
                func.count(func.distinct(Score.sample_id)),
                func.min(Score.sample_id),
                func.max(Score.sample_id),
                func.sum(Score.value),
                func.sum(Score.predicted_class),
            ).where(Score.round_id == rid, Score.strategy == "bald")
        ).one()
    assert (total, distinct) == (n, n)
    assert (lowest, highest) == (sample_ids[0], sample_ids[-1])
    # sum of i/n for i < n = (n - 1) / 2; sum of i % 10 = 45 per 10 rows -> 45 * n / 10
    assert value_sum == pytest.approx((n - 1) / 2)
    assert class_sum == 45 * n // 10


def test_round_scores_reads_back_one_strategy_in_sample_order(
    engine: Engine, make_campaign: Callable[..., int], make_round: Callable[..., int]
) -> None:
    cid = make_campaign()
    rid = make_round(cid)
    other_round = make_round(cid, 1)
    ids = _add(engine, cid, ["s0", "s1", "s2"])
    rows = [
        {"round_id": rid, "sample_id": ids["s2"], "strategy": "bald", "value": 0.2,
         "predicted_class": 1, "confidence": 0.7},
        {"round_id": rid, "sample_id": ids["s0"], "strategy": "bald", "value": 0.9,
         "predicted_class": 0, "confidence": 0.4},
        {"round_id": rid, "sample_id": ids["s0"], "strategy": "entropy", "value": 1.5,
         "predicted_class": 0, "confidence": 0.4},
        {"round_id": other_round, "sample_id": ids["s1"], "strategy": "bald", "value": 0.3,
         "predicted_class": 1, "confidence": 0.6},
    ]  # fmt: skip
    with session_scope(engine) as session:
        insert_scores(session, rows)
    with session_scope(engine) as session:
        bald = round_scores(session, rid, "bald")
        assert [(s.sample_id, s.value, s.predicted_class, s.confidence) for s in bald] == [
            (ids["s0"], 0.9, 0, 0.4),
            (ids["s2"], 0.2, 1, 0.7),
        ]
        assert [s.value for s in round_scores(session, rid, "entropy")] == [1.5]
        assert round_scores(session, rid, "margin") == []
        assert [s.sample_id for s in round_scores(session, other_round, "bald")] == [ids["s1"]]


def test_score_primary_key_rejects_duplicate(
    engine: Engine, make_campaign: Callable[..., int], make_round: Callable[..., int]
) -> None:
    cid = make_campaign()
    rid = make_round(cid)
    ids = _add(engine, cid, ["s0"])
    row = {"round_id": rid, "sample_id": ids["s0"], "strategy": "bald", "value": 1.0,
           "predicted_class": 0, "confidence": 0.9}  # fmt: skip
    with session_scope(engine) as session:
        insert_scores(session, [row])
    with pytest.raises(IntegrityError):
        with session_scope(engine) as session:
            insert_scores(session, [{**row, "value": 2.0}])
    # Another strategy for the same (round, sample) is a different key.
    with session_scope(engine) as session:
        insert_scores(session, [{**row, "strategy": "entropy"}])
    with session_scope(engine) as session:
        values = session.execute(select(Score.strategy, Score.value).order_by(Score.strategy)).all()
    assert [tuple(v) for v in values] == [("bald", 1.0), ("entropy", 1.0)]


def test_selection_is_unique_per_campaign_and_sample(
    engine: Engine, make_campaign: Callable[..., int], make_round: Callable[..., int]
) -> None:
    cid = make_campaign()
    first = make_round(cid, 0)
    second = make_round(cid, 1)
    ids = _add(engine, cid, ["s0", "s1"])
    _select(engine, cid, first, ids["s0"], rank=0)
    with pytest.raises(IntegrityError):
        _select(engine, cid, second, ids["s0"], rank=0)  # same sample again, even in a new round
    _select(engine, cid, second, ids["s1"], rank=0)
    with session_scope(engine) as session:
        assert [s.sample_id for s in round_selections(session, first)] == [ids["s0"]]
        assert [s.sample_id for s in round_selections(session, second)] == [ids["s1"]]
    assert _count(engine, Selection) == 2


def test_selection_rank_unique_per_round(
    engine: Engine, make_campaign: Callable[..., int], make_round: Callable[..., int]
) -> None:
    cid = make_campaign()
    rid = make_round(cid)
    ids = _add(engine, cid, ["s0", "s1", "s2"])
    _select(engine, cid, rid, ids["s0"], rank=1)
    _select(engine, cid, rid, ids["s1"], rank=0)
    with pytest.raises(IntegrityError):
        _select(engine, cid, rid, ids["s2"], rank=1)
    with session_scope(engine) as session:
        assert [s.sample_id for s in round_selections(session, rid)] == [ids["s1"], ids["s0"]]


def test_move_round_compare_and_set(
    engine: Engine, make_campaign: Callable[..., int], make_round: Callable[..., int]
) -> None:
    cid = make_campaign()
    rid = make_round(cid)
    with session_scope(engine) as session:
        assert session.get(Round, rid).status == RoundStatus.training
    with session_scope(engine) as session:
        assert move_round(session, rid, RoundStatus.training, RoundStatus.scoring, model_version="v1")
    with session_scope(engine) as session:
        # Stale expectation: someone already moved it; nothing changes, values included.
        assert not move_round(session, rid, RoundStatus.training, RoundStatus.failed, error="late")
    with session_scope(engine) as session:
        row = session.get(Round, rid)
        assert (row.status, row.model_version, row.error) == (RoundStatus.scoring, "v1", None)
    with session_scope(engine) as session:
        assert move_round(session, rid, RoundStatus.scoring, RoundStatus.selecting)
        assert not move_round(session, rid, RoundStatus.scoring, RoundStatus.selecting)
    with session_scope(engine) as session:
        assert session.get(Round, rid).status == RoundStatus.selecting
        assert not move_round(session, rid + 1000, RoundStatus.selecting, RoundStatus.pushing)


def test_round_index_unique_and_latest_and_counts(
    engine: Engine, make_campaign: Callable[..., int], make_round: Callable[..., int]
) -> None:
    cid = make_campaign()
    other = make_campaign("other")
    make_round(cid, 0, status=RoundStatus.complete)
    make_round(cid, 2, status=RoundStatus.failed)
    make_round(cid, 1, status=RoundStatus.complete)
    make_round(other, 5)
    with pytest.raises(IntegrityError):
        make_round(cid, 1)
    with session_scope(engine) as session:
        assert latest_round(session, cid).index == 2
        assert latest_round(session, other).index == 5
        assert count_rounds(session, cid) == 3
        assert count_rounds(session, cid, RoundStatus.complete) == 2
        assert count_rounds(session, cid, RoundStatus.waiting_for_labels) == 0
        campaign = get_campaign(session, "demo")
        assert [r.index for r in campaign.rounds] == [0, 1, 2]
    fresh = make_campaign("empty")
    with session_scope(engine) as session:
        assert latest_round(session, fresh) is None
        assert count_rounds(session, fresh) == 0
