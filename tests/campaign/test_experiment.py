"""Experiments without running a round: the shared start of a seed, the Gal et al. settings,
the experiment's settings, and a migration to 0004 that keeps every stored row."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.experiment import ExperimentConfig, experiment_arms, prepare_experiment
from activelabel.campaign.setup import split_dataset
from activelabel.campaign.steps import _pool_subset
from activelabel.errors import CampaignStateError, ConfigError
from activelabel.storage import Round, RoundKind, migrate, open_engine, session_scope


def test_the_split_depends_on_the_seed_not_on_the_strategy_or_the_schedule():
    first = split_dataset(500, CampaignConfig(name="a", strategy="random", seed=3))
    second = split_dataset(500, CampaignConfig(name="b", strategy="bald", seed=3, rounds=4, batch_size=7,
                                               mc_samples=5, pool_subset=100))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    other = split_dataset(500, CampaignConfig(name="c", strategy="random", seed=4))
    assert not np.array_equal(first[0], other[0]) and not np.array_equal(first[2], other[2])
    test, pool, initial = first
    assert len(test) == 100 and len(pool) == 400 and len(initial) == 20
    assert set(initial) <= set(pool) and not set(test) & set(pool)


def test_a_balanced_initial_set_takes_the_same_number_of_each_class():
    targets = np.arange(600) % 10
    config = CampaignConfig(name="g", initial_labeled=20, initial_balanced=True, seed=1)
    test, pool, initial = split_dataset(600, config, targets)
    assert np.bincount(targets[initial], minlength=10).tolist() == [2] * 10
    assert set(initial) <= set(pool)
    np.testing.assert_array_equal(test, split_dataset(600, CampaignConfig(name="h", seed=1), targets)[0])
    _, _, uneven = split_dataset(600, CampaignConfig(name="u", initial_labeled=23, initial_balanced=True, seed=1), targets)
    assert sorted(np.bincount(targets[uneven], minlength=10).tolist()) == [2] * 7 + [3] * 3
    with pytest.raises(ConfigError, match="needs the dataset's labels"):
        split_dataset(600, config)
    rare = np.where(np.arange(600) < 3, 1, 0)  # class 1 has 3 samples, some may go to the test split
    with pytest.raises(ConfigError, match="class 1"):
        split_dataset(600, CampaignConfig(name="r", initial_labeled=10, initial_balanced=True, seed=1), rare)


def test_the_pool_subset_is_seeded_per_round_and_only_for_active_rounds():
    pool = list(range(1000))
    config = CampaignConfig(name="p", pool_subset=50, seed=2)
    r2 = Round(index=2, kind=RoundKind.active)
    picked = _pool_subset(pool, config, r2)
    assert len(picked) == 50 and picked == sorted(set(picked))
    assert _pool_subset(pool, config, Round(index=2, kind=RoundKind.active)) == picked
    assert _pool_subset(pool, config, Round(index=3, kind=RoundKind.active)) != picked
    assert _pool_subset(pool, CampaignConfig(name="q", pool_subset=50, seed=3), r2) != picked
    assert _pool_subset(pool, config, Round(index=2, kind=RoundKind.cold_start)) == pool
    assert _pool_subset(pool[:40], config, r2) == pool[:40]
    assert _pool_subset(pool, CampaignConfig(name="n"), r2) == pool
    with pytest.raises(ConfigError, match="pool subset"):
        CampaignConfig(name="x", batch_size=20, pool_subset=10)


def test_experiment_settings_are_checked_before_anything_is_written():
    config = ExperimentConfig("e", ("random", "BALD"), (0, 1), {"rounds": 3, "batch_size": 5})
    assert config.strategies == ("random", "bald")
    assert [c.name for c in config.arms()] == ["e-random-seed0", "e-bald-seed0", "e-random-seed1", "e-bald-seed1"]
    assert {c.rounds for c in config.arms()} == {3}
    with pytest.raises(ConfigError, match="repeat a value"):
        ExperimentConfig("e", ("random", "random"), (0,), {})
    with pytest.raises(ConfigError, match="unknown campaign settings.*colour"):
        ExperimentConfig("e", ("random",), (0,), {"colour": 1})
    with pytest.raises(ConfigError, match="built-in dataset"):
        ExperimentConfig("e", ("random",), (0,), {"annotator": "labelstudio"})
    with pytest.raises(ConfigError, match="batch size"):
        ExperimentConfig("e", ("random",), (0,), {"batch_size": 0})
    with pytest.raises(ConfigError) as error:
        ExperimentConfig("runs\\may", ("random",), (0,), {})
    assert str(error.value).startswith("experiment name 'runs\\may' holds '\\'")  # as typed, not doubled
    assert str(error.value).endswith("(e.g. 'runs-may')")


def test_prepare_experiment_groups_the_campaigns_and_refuses_changed_settings(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'e.db'}")
    config = ExperimentConfig("e", ("random", "entropy"), (0,), {"rounds": 2, "batch_size": 5})
    arms = prepare_experiment(engine, config)
    assert [a.name for a in arms] == ["e-random-seed0", "e-entropy-seed0"]
    more = ExperimentConfig("e", ("random", "entropy"), (0, 1), {"rounds": 4, "batch_size": 5})
    again = prepare_experiment(engine, more)
    assert [a.campaign_id for a in again[:2]] == [a.campaign_id for a in arms]
    assert len(experiment_arms(engine, "e")) == 4
    with pytest.raises(CampaignStateError, match="batch_size 5 -> 6"):
        prepare_experiment(engine, ExperimentConfig("e", ("random",), (0,), {"rounds": 2, "batch_size": 6}))


def test_migrating_to_0004_keeps_campaigns_and_their_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = open_engine(url, create_schema=False)
    migrate.upgrade_or_downgrade(engine, "0003_own_data")
    with engine.begin() as c:
        c.execute(text("INSERT INTO campaign (id, name, task_kind, labels, strategy, dataset, config, created_at) "
                       "VALUES (1, 'kept', 'classification', '[]', 'bald', 'digits', '{}', '2026-01-01')"))
        c.execute(text("INSERT INTO sample (id, campaign_id, uri, content_hash, split) VALUES (1, 1, 'a', 'h', 'pool')"))
        c.execute(text("INSERT INTO round (id, campaign_id, \"index\", status, strategy, kind, timings, started_at) "
                       "VALUES (1, 1, 1, 'complete', 'bald', 'active', '{}', '2026-01-01')"))
        c.execute(text("INSERT INTO annotation (campaign_id, sample_id, annotator, label, source, external_id, "
                       "status, created_at) VALUES (1, 1, 'x', '0', 'given', 'g1', 'accepted', '2026-01-01')"))
    migrate.upgrade(engine)
    with engine.connect() as c:
        counts = [c.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in ("sample", "round", "annotation")]
        assert counts == [1, 1, 1]  # rebuilding `campaign` did not cascade-delete its children
        assert c.execute(text("SELECT experiment_id FROM campaign")).all() == [(None,)]
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1  # keys are back on afterwards
    migrate.upgrade_or_downgrade(engine, "0003_own_data")
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM sample")).scalar() == 1


def test_weight_decay_scales_with_the_labels_and_fixed_epochs_drop_the_step_minimum():
    from activelabel.campaign.model_settings import training_config
    from activelabel.pipeline.training import TrainingConfig, planned_epochs

    gal = CampaignConfig(name="w", weight_decay_scale=2.5, fixed_epochs=True, epochs=50)
    assert training_config(gal, 100).weight_decay == pytest.approx(0.025)
    assert training_config(gal, 500).weight_decay == pytest.approx(0.005)
    assert planned_epochs(20, training_config(gal, 20), skips_batch_of_one=True) == 50
    default = training_config(CampaignConfig(name="d", epochs=50), 20)
    assert default.weight_decay == TrainingConfig().weight_decay
    assert planned_epochs(20, default, skips_batch_of_one=True) == 200  # one step per epoch: the 200-step minimum rules
    with pytest.raises(ConfigError, match="weight decay scale"):
        CampaignConfig(name="x", weight_decay_scale=0)
