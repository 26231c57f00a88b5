"""`resume`, `watch` and `serve` take the same --dask-address / --dask-workers as `run`: a round
interrupted while scoring resumes its scoring as shards on Dask, with the rows one process
would have stored."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from activelabel.storage import Round, RoundStatus, Score, Selection, open_engine, session_scope

from test_cli import one_line_error, run_cli

DEMO = ("demo", "--campaign", "dasky", "--rounds", "1", "--batch-size", "8", "--initial-labeled", "16",
        "--mc-samples", "3", "--epochs", "2", "--fixed-epochs", "--strategy", "bald")


def _round_one(folder):
    engine = open_engine(f"sqlite:///{folder / 'activelabel.db'}")
    with session_scope(engine) as session:
        rnd = session.scalar(select(Round).where(Round.index == 1))
        rows = session.execute(select(Score.sample_id, Score.value, Score.predicted_class, Score.total,
                                      Score.aleatoric, Score.epistemic, Score.log_density, Score.ood)
                               .where(Score.round_id == rnd.id).order_by(Score.sample_id)).all()
        picked = session.scalars(select(Selection.sample_id).where(Selection.round_id == rnd.id)
                                 .order_by(Selection.rank)).all()
        return rnd.status, dict(rnd.uncertainty or {}), [tuple(r) for r in rows], list(picked)


def test_the_dask_options_are_explained_by_resume_watch_and_serve(tmp_path):
    for command in ("resume", "watch", "serve"):
        helped = run_cli(command, "--help", cwd=tmp_path)
        assert helped.returncode == 0, helped.stderr
        assert "--dask-address" in helped.stdout and "--dask-workers" in helped.stdout, command


@pytest.mark.dask
def test_a_round_killed_while_scoring_resumes_on_two_dask_workers_with_the_same_rows(tmp_path):
    one, crashed = tmp_path / "one", tmp_path / "crashed"
    one.mkdir()
    crashed.mkdir()
    whole = run_cli(*DEMO, cwd=one)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = run_cli(*DEMO, cwd=crashed, env={"ACTIVELABEL_CRASH_AT": "score"})
    assert killed.returncode != 0
    assert _round_one(crashed)[0] == RoundStatus.scoring

    bad = run_cli("resume", "dasky", "--dask-workers", "0", cwd=crashed)
    assert "--dask-workers must be at least 1" in one_line_error(bad)
    resumed = run_cli("resume", "dasky", "--dask-workers", "2", cwd=crashed)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming round 1" in resumed.stderr

    status, uncertainty, rows, picked = _round_one(crashed)
    expected_status, expected_uncertainty, expected_rows, expected_picked = _round_one(one)
    assert status == expected_status == RoundStatus.complete
    assert uncertainty.pop("shards") == 4 and "shards" not in expected_uncertainty  # 2 workers x 2 shards
    assert uncertainty == expected_uncertainty
    # Every stored value equal; the log densities (column 6) to 1e-6 relative: 2 labels per class
    # in 128 feature dimensions put them in the jitter regime (around -1e13 nats), where a worker's
    # float rounding of the features moves their last digits (see test_flows_sharded.assert_same_outcome).
    assert [r[:6] + r[7:] for r in rows] == [r[:6] + r[7:] for r in expected_rows] and len(rows) > 1000
    np.testing.assert_allclose([r[6] for r in rows], [r[6] for r in expected_rows], rtol=1e-6)
    assert picked == expected_picked and len(picked) == 8
