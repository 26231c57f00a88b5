"""Scoring a round's pool as shards on a real 2-worker Dask LocalCluster (Prefect's Dask task
runner) gives the same score rows and the same selection as the round's own single-process
scoring. Real digits, real SQLite, real Prefect, real Dask."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from activelabel.campaign import prepare_campaign, steps
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.shards import (
    merge_shards,
    plan_shards,
    round_shards,
    save_round_checkpoint,
    score_shard,
    shard_rows,
    top_k,
)
from activelabel.errors import ConfigError
from activelabel.storage import Score, Selection, open_engine, session_scope
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
        # Shards do not compute the feature density yet (issue 11): compare every other column.
        columns = [c for c in ALL_SCORE_COLUMNS if c not in DENSITY_COLUMNS]
        rows = session.execute(select(*[getattr(Score, c) for c in columns])
                               .where(Score.round_id == round_id).order_by(Score.sample_id)).all()
        chosen = list(session.scalars(select(Selection.sample_id).where(Selection.round_id == round_id)
                                      .order_by(Selection.rank)))
    return sorted(tuple(r) for r in rows), chosen


@pytest.mark.dask
def test_dask_sharded_scoring_equals_single_process_scoring(tmp_path) -> None:
    from activelabel.flows.sharded import score_shards_on_dask

    # Shards do not refine the top candidates (campaign.refine) yet: compare against a round without.
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
