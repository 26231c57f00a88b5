"""Bulk score writes (storage.bulk.write_scores) on real SQLite and real PostgreSQL.

PostgreSQL runs only when ``ACTIVELABEL_TEST_POSTGRES_URL`` is set. Each test gets its own
throwaway PostgreSQL schema (a ``search_path`` on the connection) holding just the tables it
needs, dropped afterwards: the database's other tables (another test module's) are untouched.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from activelabel.storage import (
    Campaign,
    Round,
    RoundStatus,
    Sample,
    SampleSplit,
    Score,
    open_engine,
    session_scope,
)
from activelabel.storage.bulk import SCORE_COLUMNS, _insert_core, write_scores
from activelabel.storage.models import Base
from activelabel.storage.repository import NewSample, add_samples
from tests_support_postgres import throwaway_schema_url


# campaign.experiment_id points at experiment: create it too (sorted by dependency on create and drop).
TABLES = [Base.metadata.tables[name] for name in ("experiment", "campaign", "round", "sample", "score")]
N = 10_000  # the round-trip test
SMALL = 2_000  # the others: same code paths, less time


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
def bulk_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = open_engine(f"sqlite:///{tmp_path / 'bulk.db'}", create_schema=False)
        Base.metadata.create_all(engine, tables=TABLES)
        try:
            yield engine
        finally:
            engine.dispose()
        return

    with throwaway_schema_url("al_bulk_test") as url:
        engine = open_engine(url, create_schema=False)
        try:
            Base.metadata.drop_all(engine, tables=TABLES)  # a clean slate, even if the name recurs
            Base.metadata.create_all(engine, tables=TABLES)
            yield engine
        finally:
            engine.dispose()


def _setup(engine: Engine, n_samples: int = N, n_rounds: int = 2) -> tuple[list[int], list[int]]:
    """A campaign with rounds (status ``scoring``) and pool samples; their ids."""
    with session_scope(engine) as session:
        campaign = Campaign(name="bulk", labels=["a", "b"], strategy="bald", dataset="d", config={})
        session.add(campaign)
        session.flush()
        rounds = [
            Round(campaign_id=campaign.id, index=i, strategy="bald", status=RoundStatus.scoring)
            for i in range(n_rounds)
        ]
        session.add_all(rounds)
        add_samples(
            session,
            campaign.id,
            [NewSample(f"mem://{i}", f"{i:064x}", SampleSplit.pool) for i in range(n_samples)],
        )
        session.flush()
        sample_ids = list(
            session.scalars(
                select(Sample.id).where(Sample.campaign_id == campaign.id).order_by(Sample.id)
            )
        )
        return [r.id for r in rounds], sample_ids


def _rows(round_id: int, sample_ids: list[int], strategy: str = "bald") -> list[tuple]:
    # Values with full float precision, to check they round-trip exactly.
    return [
        (round_id, sid, strategy, 1.0 / (i + 3), i % 10, math.sqrt(i) / 100.0 + 1e-9)
        for i, sid in enumerate(sample_ids)
    ]


def _count(engine: Engine, round_id: int) -> int:
    with engine.connect() as connection:
        return connection.scalar(
            select(func.count()).select_from(Score).where(Score.round_id == round_id)
        )


def test_write_scores_round_trips_every_value(bulk_engine: Engine) -> None:
    (round_id, _), sample_ids = _setup(bulk_engine)
    rows = _rows(round_id, sample_ids)

    with session_scope(bulk_engine) as session:
        assert write_scores(session, rows) == N

    with bulk_engine.connect() as connection:
        count, total = connection.execute(
            select(func.count(), func.sum(Score.value)).where(Score.round_id == round_id)
        ).one()
        stored = {
            (r.round_id, r.sample_id, r.strategy): tuple(r)
            for r in connection.execute(
                select(*(getattr(Score, c) for c in SCORE_COLUMNS)).where(
                    Score.round_id == round_id
                )
            )
        }
    assert count == N
    assert total == pytest.approx(math.fsum(r[3] for r in rows), rel=1e-12)
    for row in (rows[0], rows[1], rows[N // 2], rows[-1]):
        assert stored[row[:3]] == row  # exact: floats, ints and the strategy string
    assert sorted(stored.values()) == sorted(rows)


def test_write_scores_joins_the_callers_transaction(bulk_engine: Engine) -> None:
    """Invisible to another connection until the caller commits, together with its other writes."""
    (round_id, _), sample_ids = _setup(bulk_engine, n_samples=SMALL)

    with session_scope(bulk_engine) as session:
        session.execute(
            update(Round).where(Round.id == round_id).values(status=RoundStatus.selecting)
        )
        assert write_scores(session, _rows(round_id, sample_ids)) == SMALL
        # The writing session sees its own rows ...
        assert session.scalar(select(func.count()).select_from(Score)) == SMALL
        # ... another connection sees neither the scores nor the status change yet.
        assert _count(bulk_engine, round_id) == 0
        with bulk_engine.connect() as other:
            assert (
                other.scalar(select(Round.status).where(Round.id == round_id))
                == RoundStatus.scoring
            )

    assert _count(bulk_engine, round_id) == SMALL
    with bulk_engine.connect() as other:
        assert (
            other.scalar(select(Round.status).where(Round.id == round_id)) == RoundStatus.selecting
        )


def test_rollback_leaves_nothing_written(bulk_engine: Engine) -> None:
    (round_id, _), sample_ids = _setup(bulk_engine, n_samples=100)
    with pytest.raises(RuntimeError), session_scope(bulk_engine) as session:
        session.execute(
            update(Round).where(Round.id == round_id).values(status=RoundStatus.selecting)
        )
        write_scores(session, _rows(round_id, sample_ids))
        raise RuntimeError("the step failed after scoring")
    assert _count(bulk_engine, round_id) == 0
    with bulk_engine.connect() as other:
        assert other.scalar(select(Round.status).where(Round.id == round_id)) == RoundStatus.scoring


def test_duplicate_in_batch_raises_integrity_error_and_writes_nothing(bulk_engine: Engine) -> None:
    (round_id, _), sample_ids = _setup(bulk_engine, n_samples=SMALL)
    rows = _rows(round_id, sample_ids)
    rows.append(rows[0][:3] + (0.5, 1, 0.5))  # same (round, sample, strategy) as the first row

    with pytest.raises(IntegrityError) as raised, session_scope(bulk_engine) as session:
        write_scores(session, rows)
    assert _count(bulk_engine, round_id) == 0
    # The message names the statement, not thousands of parameters.
    assert len(str(raised.value)) < 2_000


def test_duplicate_of_committed_row_rolls_back_only_the_new_batch(bulk_engine: Engine) -> None:
    (round_id, other_round), sample_ids = _setup(bulk_engine, n_samples=1_000)
    with session_scope(bulk_engine) as session:
        assert write_scores(session, _rows(round_id, sample_ids[:10])) == 10

    batch = _rows(other_round, sample_ids) + _rows(round_id, sample_ids[5:6])  # last row clashes
    with pytest.raises(IntegrityError), session_scope(bulk_engine) as session:
        write_scores(session, batch)

    assert _count(bulk_engine, other_round) == 0
    assert _count(bulk_engine, round_id) == 10


def test_unknown_round_raises_integrity_error(bulk_engine: Engine) -> None:
    # score.round_id is a foreign key; score.sample_id deliberately is not (see models.Score).
    (round_id, _), sample_ids = _setup(bulk_engine, n_samples=10)
    rows = _rows(round_id, sample_ids) + [(round_id + 1_000, sample_ids[0], "bald", 0.1, 0, 0.1)]
    with pytest.raises(IntegrityError), session_scope(bulk_engine) as session:
        write_scores(session, rows)
    assert _count(bulk_engine, round_id) == 0


def test_empty_batch_writes_nothing(bulk_engine: Engine) -> None:
    with session_scope(bulk_engine) as session:
        assert write_scores(session, []) == 0
    with bulk_engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Score)) == 0


def test_same_samples_under_two_strategies(bulk_engine: Engine) -> None:
    (round_id, _), sample_ids = _setup(bulk_engine, n_samples=100)
    with session_scope(bulk_engine) as session:
        written = write_scores(session, _rows(round_id, sample_ids, "bald"))
        written += write_scores(session, _rows(round_id, sample_ids, "entropy"))
    assert written == 200
    assert _count(bulk_engine, round_id) == 200


def test_generic_core_path_matches(bulk_engine: Engine) -> None:
    """The fallback for other dialects (Core insert() in chunks), exercised on this backend."""
    (round_id, _), sample_ids = _setup(bulk_engine, n_samples=100)
    rows = _rows(round_id, sample_ids)
    with session_scope(bulk_engine) as session:
        assert _insert_core(session, rows) == 100
    with bulk_engine.connect() as connection:
        stored = connection.execute(
            select(*(getattr(Score, c) for c in SCORE_COLUMNS)).order_by(Score.sample_id)
        ).all()
    assert [tuple(r) for r in stored] == rows
    with pytest.raises(IntegrityError), session_scope(bulk_engine) as session:
        _insert_core(session, rows[:1])


def test_write_scores_carries_the_uncertainty_split(bulk_engine: Engine) -> None:
    """Rows of 11 values also store total / aleatoric / epistemic and log density / OOD flag
    (None allowed), exactly; rows of 9 leave the density columns empty."""
    from activelabel.storage.bulk import ALL_SCORE_COLUMNS

    (round_id, _), sample_ids = _setup(bulk_engine, n_samples=SMALL)
    rows = [
        (*row, None, None, None, None, None) if i % 3 == 0
        else (*row, 0.5 + i / 7, 0.25 + i / 11, 0.25 + i / 7 - i / 11, -40.0 - i / 3, i % 2 == 0)
        for i, row in enumerate(_rows(round_id, sample_ids))
    ]
    with session_scope(bulk_engine) as session:
        assert write_scores(session, rows) == SMALL
    with bulk_engine.connect() as connection:
        stored = [tuple(r) for r in connection.execute(
            select(*(getattr(Score, c) for c in ALL_SCORE_COLUMNS)).order_by(Score.sample_id))]
    assert stored == sorted(rows, key=lambda r: r[1])
    with pytest.raises(ValueError, match="6, 9, 11 values"):
        with session_scope(bulk_engine) as session:
            write_scores(session, [rows[0][:7]])


def test_score_columns_write_the_rows_write_scores_writes(bulk_engine: Engine, monkeypatch) -> None:
    """A round's scores given as numpy columns (what scoring keeps) are stored as the row tuples
    were, every column exact, across several row chunks; a column left out is NULL."""
    import numpy as np

    from activelabel.storage import bulk
    from activelabel.storage.bulk import ALL_SCORE_COLUMNS, write_score_columns

    monkeypatch.setattr(bulk, "COLUMN_CHUNK", 7)  # several chunks of a small pool
    (by_rows, by_columns), sample_ids = _setup(bulk_engine, n_samples=SMALL)
    i = np.arange(SMALL)
    columns = {"sample_id": np.array(sample_ids, dtype=np.int64), "value": 1.0 / (i + 3),
               "predicted_class": (i % 10).astype(np.int64), "confidence": np.sqrt(i) / 100.0 + 1e-9,
               "total": i / 7.0, "aleatoric": i / 11.0, "epistemic": i / 7.0 - i / 11.0,
               "log_density": -np.exp(i / 50.0), "ood": i % 3 == 0}
    rows = [(by_rows, int(sid), "bald", *(columns[c][k].item() for c in ALL_SCORE_COLUMNS[3:]))
            for k, sid in enumerate(sample_ids)]
    with session_scope(bulk_engine) as session:
        assert write_scores(session, rows) == SMALL
        assert write_score_columns(session, by_columns, "bald", columns) == SMALL
        plain = {c: columns[c] for c in ("sample_id", "value", "predicted_class", "confidence")}
        assert write_score_columns(session, by_columns, "entropy", plain) == SMALL
    with bulk_engine.connect() as connection:
        def stored(round_id: int, strategy: str) -> list[tuple]:
            return [tuple(r)[3:] for r in connection.execute(
                select(*(getattr(Score, c) for c in ALL_SCORE_COLUMNS))
                .where(Score.round_id == round_id, Score.strategy == strategy).order_by(Score.sample_id))]

        assert stored(by_columns, "bald") == stored(by_rows, "bald") == [r[3:] for r in rows]
        assert all(r[3:] == (None,) * 5 for r in stored(by_columns, "entropy"))
    with pytest.raises(ValueError, match="unknown"):
        with session_scope(bulk_engine) as session:
            write_score_columns(session, by_columns, "x", {**plain, "bogus": plain["value"]})
