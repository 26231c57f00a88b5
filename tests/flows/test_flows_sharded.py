"""Scoring a round's pool as shards on a real 2-worker Dask LocalCluster (Prefect's Dask task
runner) gives the same score rows and the same selection as the round's own single-process
scoring. Real digits, real SQLite, real Prefect, real Dask."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from sqlalchemy import select

from activelabel.campaign import prepare_campaign, steps
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.shards import (
    InProcessShards,
    merge_shards,
    plan_shards,
    round_shards,
    save_round_checkpoint,
    score_shard,
    shard_rows,
    top_k,
)
from activelabel.errors import ConfigError
from activelabel.storage import (
    Round,
    RoundKind,
    RoundStatus,
    Score,
    Selection,
    open_engine,
    session_scope,
)
from activelabel.storage.repository import unlabeled_pool
from activelabel.storage.bulk import ALL_SCORE_COLUMNS, DENSITY_COLUMNS


def test_shards_are_whole_chunks_and_cover_the_pool() -> None:
    assert plan_shards(1000, 3, chunk=256) == [(0, 512), (512, 768), (768, 1000)]
    assert plan_shards(100, 4, chunk=256) == [(0, 100)]
    assert plan_shards(0, 2) == []
    with pytest.raises(ConfigError):
        plan_shards(10, 0)


def _scoring_round(tmp_path, **settings):
    url = f"sqlite:///{tmp_path / 'al.db'}"
    engine = open_engine(url)
    config = CampaignConfig(name="shards", strategy=settings.pop("strategy", "bald"), batch_size=10,
                            initial_labeled=20, mc_samples=4, epochs=2, device="cpu", calibrate=False, **settings)
    campaign_id = prepare_campaign(engine, config)
    round_id = steps.start_round(engine, campaign_id)
    steps.train_step(engine, round_id)
    return url, engine, round_id


def _stored(engine, round_id):
    with session_scope(engine) as session:
        # round_shards builds requests without the round's density: every other column.
        columns = [c for c in ALL_SCORE_COLUMNS if c not in DENSITY_COLUMNS]
        rows = session.execute(select(*[getattr(Score, c) for c in columns])
                               .where(Score.round_id == round_id).order_by(Score.sample_id)).all()
        chosen = list(session.scalars(select(Selection.sample_id).where(Selection.round_id == round_id)
                                      .order_by(Selection.rank)))
    return sorted(tuple(r) for r in rows), chosen


@pytest.mark.dask
def test_dask_sharded_scoring_equals_single_process_scoring(tmp_path) -> None:
    from activelabel.flows.sharded import score_shards_on_dask

    # The library's shards are the first stage; score_step refines after they merge (tested below).
    # Compare against a round without refinement.
    url, engine, round_id = _scoring_round(tmp_path, refine_passes=0)
    plan = round_shards(engine, round_id, shards=3, database_url=url)
    assert len(plan.requests) == 3 and len(plan.sample_ids) > 1000  # digits: ~1,400 unlabeled
    merged = score_shards_on_dask(plan.requests, workers=2)
    rows = shard_rows(merged, round_id, "bald", plan.sample_ids)
    picked = top_k(merged, plan.sample_ids, 10, selectable=plan.selectable)

    steps.score_step(engine, round_id)  # the round's own, single-process scoring
    steps.select_step(engine, round_id)
    stored, chosen = _stored(engine, round_id)
    assert sorted(rows) == stored  # every value of every row, bit for bit
    assert picked == chosen and len(chosen) == 10


def test_a_checkpoint_file_scores_as_the_database_does_and_shards_merge_in_order(tmp_path) -> None:
    url, engine, round_id = _scoring_round(tmp_path, strategy="entropy")
    from_database = round_shards(engine, round_id, shards=1, database_url=url)
    whole = score_shard(from_database.requests[0])
    path = save_round_checkpoint(engine, round_id, str(tmp_path / "round.pt"))
    in_file = round_shards(engine, round_id, shards=4, checkpoint_path=path)
    count = len(in_file.sample_ids)
    assert [r.start for r in in_file.requests] == [start for start, _ in plan_shards(count, 4)]
    assert sum(len(r.uris) for r in in_file.requests) == count and len(in_file.requests) == 4
    merged = merge_shards([score_shard(r) for r in reversed(in_file.requests)])  # any order back
    for name in ("positions", "values", "predicted", "confidence", "total", "aleatoric", "epistemic"):
        np.testing.assert_array_equal(getattr(merged, name), getattr(whole, name))


def test_a_password_never_travels_to_the_workers(tmp_path) -> None:
    from activelabel.campaign.shards import shard_requests

    config = CampaignConfig(name="x")
    with pytest.raises(ConfigError) as caught:
        shard_requests(config, 1, "bald", ["a"], seed=0, samples=2, temperature=1.0, shards=1,
                       database_url="postgresql+psycopg://me:secret@db:5432/al")
    assert "ACTIVELABEL_DATABASE_PASSWORD" in str(caught.value) and "secret" not in str(caught.value)


def test_dask_runner_needs_one_way_to_a_cluster() -> None:
    from activelabel.flows.sharded import dask_task_runner

    for kwargs in ({}, {"address": "tcp://h:8786", "workers": 2}, {"address": "h:8786"}, {"workers": 0}):
        with pytest.raises(ConfigError):
            dask_task_runner(**kwargs)
    assert dask_task_runner(address="tcp://h:8786").address == "tcp://h:8786"


def _round_outcome(engine, round_id):
    """Everything a round's scoring and selection stored: every score column of every row,
    the selection, and the round's figures (pool count, mean entropy, density, batch plan)."""
    with session_scope(engine) as session:
        rows = session.execute(select(*[getattr(Score, c) for c in ALL_SCORE_COLUMNS])
                               .where(Score.round_id == round_id).order_by(Score.sample_id)).all()
        chosen = session.execute(select(Selection.sample_id, Selection.rank, Selection.score,
                                        Selection.predicted_label, Selection.confidence)
                                 .where(Selection.round_id == round_id).order_by(Selection.rank)).all()
        rnd = session.get(Round, round_id)
        uncertainty = {k: v for k, v in (rnd.uncertainty or {}).items() if k != "shards"}
        figures = (rnd.pool_count, rnd.mean_pool_entropy, uncertainty, rnd.batch_plan)
    return [tuple(r) for r in rows], [tuple(c) for c in chosen], figures


def assert_same_outcome(got, expected) -> None:
    """Two round outcomes (:func:`_round_outcome`) are the same: every stored value equal, the
    feature log densities to 1e-6 relative. With 20 labels in 128 feature dimensions the class
    covariances are held up by jitter (a density not measured yet), so the features' float
    rounding, which differs between one process and a worker's, moves log q(z) (around -1e13
    nats) in its last digits; no real difference hides in 1e-6."""
    (rows, chosen, figures), (want_rows, want_chosen, want_figures) = got, expected
    strip = lambda rs: [r[:DENSITY_INDEX] + r[DENSITY_INDEX + 1:] for r in rs]  # noqa: E731
    assert strip(rows) == strip(want_rows)
    np.testing.assert_allclose([r[DENSITY_INDEX] for r in rows], [r[DENSITY_INDEX] for r in want_rows], rtol=1e-6)
    assert (chosen, figures) == (want_chosen, want_figures)


@pytest.fixture(scope="module")
def trained_copies(tmp_path_factory):
    """``_trained_copies`` with each strategy's round trained once per module: later tests of
    the same strategy get copies of the same trained database (scoring writes only the copies)."""
    built: dict[str, tuple] = {}

    def copies_of(tmp_path, strategy: str, copies: int = 2):
        if strategy not in built:
            folder = tmp_path_factory.mktemp(f"trained-{strategy}")
            _, round_id, waiting = _trained_copies(folder, strategy, copies=0)
            built[strategy] = (folder / "al.db", round_id, waiting)
        template, round_id, waiting = built[strategy]
        paths = []
        for k in range(copies):
            path = tmp_path / f"copy{k}.db"
            shutil.copy(template, path)
            paths.append(f"sqlite:///{path}")
        return paths, round_id, list(waiting)

    return copies_of


def _trained_copies(tmp_path, strategy: str, copies: int = 2, leftovers: int = 3):
    """One trained round waiting to be scored, as ``copies`` identical SQLite files (same
    checkpoint, same pool): one per way of scoring. ``leftovers`` pool samples were sent to
    annotators by an earlier round and are still unlabeled (scored, never selected again)."""
    url, engine, round_id = _scoring_round(tmp_path, strategy=strategy)
    with session_scope(engine) as session:
        rnd = session.get(Round, round_id)
        earlier = Round(campaign_id=rnd.campaign_id, index=0, strategy="random", kind=RoundKind.cold_start,
                        status=RoundStatus.complete, timings={})
        session.add(earlier)
        session.flush()
        waiting = unlabeled_pool(session, rnd.campaign_id)[:leftovers]
        session.add_all(Selection(campaign_id=rnd.campaign_id, round_id=earlier.id, sample_id=s.id, rank=rank,
                                  score=0.0, predicted_label="", confidence=0.0)
                        for rank, s in enumerate(waiting))
    engine.dispose()
    paths = []
    for k in range(copies):
        path = tmp_path / f"copy{k}.db"
        shutil.copy(tmp_path / "al.db", path)
        paths.append(f"sqlite:///{path}")
    return paths, round_id, [s.id for s in waiting]


@pytest.mark.dask
def test_a_round_on_two_dask_workers_equals_the_single_process_round(tmp_path, trained_copies) -> None:
    """The Prefect round flow with dask_workers=2 (what `activelabel run --dask-workers 2` runs)
    stores the same rows (every column, feature density and OOD flag included), the same
    selection and the same round figures as the flow in one process, leftovers included."""
    from activelabel.flows import round_flow

    (single, sharded), round_id, waiting = trained_copies(tmp_path, "bald")
    round_flow("shards", single)
    round_flow("shards", sharded, dask_workers=2)
    one, two = open_engine(single), open_engine(sharded)
    rows, chosen, figures = _round_outcome(one, round_id)
    assert_same_outcome(_round_outcome(two, round_id), (rows, chosen, figures))
    assert len(rows) > 1000 and all(r[DENSITY_INDEX] is not None and r[OOD_INDEX] is not None for r in rows)
    assert len(chosen) == 10 and not {c[0] for c in chosen} & set(waiting)
    assert {r[1] for r in rows} >= set(waiting)  # leftovers are scored
    assert figures[0] == len(rows) - len(waiting) and figures[2]["density"]["labeled"] == 20
    # Refined after the shards merge; the small CNN samples its whole network, so the refinement
    # is capped at the first stage's image-passes (campaign.refine.refinement_passes).
    samples = figures[2]["samples"]
    assert figures[2]["refined"] == {"candidates": 100, "passes": min(1000, len(rows) * samples // 100)}
    with session_scope(two) as session:
        assert session.get(Round, round_id).uncertainty["shards"] == 4  # 2 workers x 2 shards


DENSITY_INDEX = ALL_SCORE_COLUMNS.index("log_density")
OOD_INDEX = ALL_SCORE_COLUMNS.index("ood")


@pytest.mark.parametrize("strategy", ["batchbald", "density", "random"])
def test_shards_score_batch_aware_feature_and_random_strategies_as_one_process(tmp_path, strategy) -> None:
    """Strategies that need more than a per-sample score: BatchBALD's candidates are merged
    across shards, density's features are read against the density fitted once by the round,
    and random scores are seeded per chunk. Three in-process shards equal one process."""
    (single, sharded), round_id, _ = _trained_copies(tmp_path, strategy)
    outcomes = []
    for url, runner in ((single, None), (sharded, InProcessShards(shards=3, database_url=sharded))):
        engine = open_engine(url)
        steps.score_step(engine, round_id, run_shards=runner)
        steps.select_step(engine, round_id)
        outcomes.append(_round_outcome(engine, round_id))
    assert outcomes[0] == outcomes[1]
    rows, chosen, (_, _, uncertainty, plan) = outcomes[0]
    assert len(chosen) == 10
    if strategy == "batchbald":
        assert plan["sample_ids"][:10] == [c[0] for c in chosen] and uncertainty["candidates"] > 10
    if strategy == "density":
        assert all(r[3] == -r[DENSITY_INDEX] for r in rows)  # the score is -log q(z)


def test_pool_columns_are_the_unlabeled_pool(tmp_path, trained_copies) -> None:
    """The round reads the pool as two columns: the same samples, in the same order, as the
    row objects it read before (labeled, selected, copies and unreadable ones left out)."""
    from activelabel.storage.repository import record_problems, unlabeled_pool_columns

    (url,), _, _ = trained_copies(tmp_path, "bald", copies=1)
    engine = open_engine(url)
    with session_scope(engine) as session:
        campaign_id = session.get(Round, 1).campaign_id
        record_problems(session, campaign_id, [(unlabeled_pool(session, campaign_id)[5].uri, "broken")])
    with session_scope(engine) as session:
        rows = unlabeled_pool(session, campaign_id)
        columns = unlabeled_pool_columns(session, campaign_id)
    assert columns.ids.tolist() == [s.id for s in rows] and columns.uris == [s.uri for s in rows]
    assert [tuple(s) for s in columns.take(np.array([3, 1]))] == [(rows[3].id, rows[3].uri), (rows[1].id, rows[1].uri)]
