"""Deep ensembles for segmentation (Lakshminarayanan et al. 2017): M U-Nets of different seeds
per round, every member stored, the pool scored with all of them.

One shared two-round campaign on the generated shapes dataset (``uncertainty = "ensemble"``,
``ensemble_size = 2``, 24 seed masks so both rounds hold out images and fit a temperature).
Every member trains exactly 5 epochs (``fixed_epochs``: ~20 optimizer steps a round instead of the
200-step minimum): these tests assert what is stored and that scores are recomputable from the
stored members, not how well the members segment, so the minimum only cost time (module setup
116 s -> 58 s, 69 s -> 42 s of CPU, one busy 2-core machine, 2026-11-30).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select

from activelabel.campaign import prepare_campaign
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import campaign_data, clear_cache
from activelabel.campaign.segmentation_round import CLASS_PIXELS, load_segmenter
from activelabel.campaign.steps import member_seed
from activelabel.campaign.uncertainty_report import describe_scoring, round_uncertainty
from activelabel.errors import ConfigError
from activelabel.storage import (
    Heatmap,
    ModelCheckpoint,
    Round,
    RoundStatus,
    Sample,
    Score,
    Selection,
    open_engine,
    session_scope,
)
from tests_support_rounds import run_round

SEEDS, BATCH, MEMBERS = 24, 8, 2
CPU = torch.device("cpu")


def seg_config(tmp_path: Path, **changes) -> CampaignConfig:
    settings = dict(
        name="shapes-seg-ens", task="segmentation", dataset="shapes?n=120&size=32", strategy="bald",
        uncertainty="ensemble", ensemble_size=MEMBERS, initial_labeled=SEEDS, min_labels_to_train=SEEDS,
        batch_size=BATCH, epochs=5, fixed_epochs=True, test_fraction=0.25, rounds=2, device="cpu",
        heatmap_dir=str(tmp_path / "heatmaps"), calibrate=True,
    )
    return CampaignConfig(**(settings | changes))


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """(engine, campaign id, config) after two rounds (shared: training costs seconds)."""
    tmp_path = tmp_path_factory.mktemp("segens")
    clear_cache()
    config = seg_config(tmp_path)
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, config)
    run_round(engine, campaign_id)
    run_round(engine, campaign_id)
    return engine, campaign_id, config


def _members(session, rnd: Round) -> list[ModelCheckpoint]:
    checkpoints = session.scalars(select(ModelCheckpoint).where(ModelCheckpoint.round_id == rnd.id)
                                  .order_by(ModelCheckpoint.member)).all()
    for c in checkpoints:
        session.expunge(c)
    return list(checkpoints)


def _entropy(p: np.ndarray, axis: int) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=axis)


def test_each_round_stores_every_member_and_scores_by_their_disagreement(campaign) -> None:
    engine, _, config = campaign
    data = campaign_data(config)
    with session_scope(engine) as session:
        rounds = session.scalars(select(Round).order_by(Round.index)).all()
        assert [(r.index, r.status) for r in rounds] == [(1, RoundStatus.complete), (2, RoundStatus.complete)]
        uri_of = dict(session.execute(select(Sample.id, Sample.uri)).all())
        for rnd in rounds:
            checkpoints = _members(session, rnd)
            assert [c.member for c in checkpoints] == list(range(MEMBERS))
            assert CLASS_PIXELS in checkpoints[0].architecture
            assert checkpoints[0].state != checkpoints[1].state  # different seeds, different weights
            assert rnd.training["members"] == MEMBERS
            assert rnd.uncertainty["method"] == "ensemble" and rnd.uncertainty["members"] == MEMBERS
            assert rnd.uncertainty["samples"] == MEMBERS and rnd.uncertainty["map"] == "bald"
            t = rnd.uncertainty["temperature"]
            assert t == rnd.calibration["temperature"]
            scores = session.scalars(select(Score).where(Score.round_id == rnd.id).order_by(Score.sample_id)).all()
            assert len(scores) == rnd.pool_count > 0
            assert len(session.scalars(select(Selection).where(Selection.round_id == rnd.id)).all()) == BATCH
            assert len(session.scalars(select(Heatmap).where(Heatmap.round_id == rnd.id)).all()) == BATCH
            # Recompute six images' decomposition from the two members' own deterministic passes.
            picked = scores[:6]
            images = torch.from_numpy(data.store.read([uri_of[s.sample_id] for s in picked]))
            with torch.no_grad():
                probs = np.stack([torch.softmax(load_segmenter(c, CPU)(images) / t, dim=1).numpy()
                                  for c in checkpoints]).astype(np.float64)  # [M, b, C, H, W]
            total = _entropy(probs.mean(axis=0), axis=1)  # [b, H, W]
            aleatoric = _entropy(probs, axis=2).mean(axis=0)
            bald = (total - aleatoric).mean(axis=(1, 2))
            assert np.array([s.epistemic for s in picked]) == pytest.approx(bald, rel=1e-3, abs=1e-5)
            assert np.array([s.total for s in picked]) == pytest.approx(total.mean(axis=(1, 2)), rel=1e-3, abs=1e-5)
            # The members disagree: epistemic > 0 on every image they scored.
            assert min(s.epistemic for s in scores) > 0.0
            assert all(s.total == pytest.approx(s.aleatoric + s.epistemic) for s in scores)


def test_measuring_and_calibration_use_the_members_mean(campaign) -> None:
    engine, _, config = campaign
    data = campaign_data(config)
    with session_scope(engine) as session:
        rnd = session.scalars(select(Round).where(Round.index == 1)).one()
        checkpoints = _members(session, rnd)
        test_uris = session.scalars(select(Sample.uri).where(Sample.split == "test").order_by(Sample.id)).all()
        # calibration fitted on the members' mean (classification's predictor for ensembles)
        cal = rnd.calibration
        assert cal["predictor"] == {"method": "ensemble", "passes": 1, "members": MEMBERS}
        assert cal["validation_size"] >= 5
        # a sampled predictor (M members): T2 is kept only where the folds by image chose it
        chosen = cal["mixture_check"]["chosen"]
        assert (cal["mixture_temperature"] != 1.0) == (chosen in ("mixture_temperature", "both"))
        metrics = rnd.segmentation_metrics
        rnd_uncertainty = dict(rnd.uncertainty)
    images = torch.from_numpy(data.store.read(test_uris))
    masks = np.stack([data.given_masks[u] for u in test_uris])
    with torch.no_grad():
        mean = np.mean([torch.softmax(load_segmenter(c, CPU)(images), dim=1).numpy() for c in checkpoints], axis=0)
    # status --round reads the ensemble back in words
    assert describe_scoring(rnd_uncertainty)[0].startswith(
        f"Scoring: an ensemble of {MEMBERS} models, {MEMBERS} passes per sample in all (one deterministic pass "
        "per model)")
    assert round_uncertainty(engine, config.name, 1).calibration["predictor"]["members"] == MEMBERS
    # pixel accuracy of the members' mean softmax (shapes masks have no ignored pixels)
    assert metrics["pixel_accuracy"] == pytest.approx(float((mean.argmax(1) == masks).mean()), abs=1e-6)
    assert metrics["pixels"] == masks.size


def test_member_seeds_are_classifications() -> None:
    assert [member_seed(11, m) for m in range(3)] == [11, 11 + 7919, 11 + 2 * 7919]


def test_settings_accept_ensembles_for_segmentation_but_still_refuse_the_rest(tmp_path) -> None:
    assert seg_config(tmp_path).uncertainty == "ensemble"
    assert seg_config(tmp_path, uncertainty="ensemble+mc_dropout", mc_samples=3).ensemble_size == MEMBERS
    with pytest.raises(ConfigError, match="an ensemble needs at least 2 members"):
        seg_config(tmp_path, ensemble_size=1)
    with pytest.raises(ConfigError, match="segmentation campaigns do not support freeze_backbone yet"):
        seg_config(tmp_path, freeze_backbone=True)
    with pytest.raises(ConfigError, match="segmentation campaigns do not support annotator_noise yet"):
        seg_config(tmp_path, annotator_noise=0.1)
