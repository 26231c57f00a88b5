"""A simulated segmentation campaign through the same round as classification (issue 10).

Two active rounds on the generated shapes dataset: the first trains on the 8 seed masks, the
second on those plus the 16 masks the simulated annotator painted for round 1's selection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from activelabel.annotation.base import MASK_LABEL
from activelabel.campaign import prepare_campaign
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import campaign_data, clear_cache
from activelabel.campaign.segmentation_round import labelstudio_parts
from activelabel.errors import ConfigError
from activelabel.pipeline.masks import mask_from_png_bytes
from activelabel.storage import (
    Annotation,
    Campaign,
    Heatmap,
    Round,
    RoundKind,
    RoundStatus,
    Sample,
    SampleSplit,
    Score,
    Selection,
    open_engine,
    session_scope,
)
from tests_support_rounds import run_round

SEEDS, BATCH = 8, 16


def seg_config(tmp_path: Path, **changes) -> CampaignConfig:
    settings = dict(
        name="shapes-seg", task="segmentation", dataset="shapes?n=120&size=32", strategy="bald",
        initial_labeled=SEEDS, min_labels_to_train=SEEDS, batch_size=BATCH, mc_samples=4, epochs=1,
        test_fraction=0.25, rounds=2, device="cpu", heatmap_dir=str(tmp_path / "heatmaps"),
    )
    return CampaignConfig(**(settings | changes))


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """(engine, campaign id, config, tmp path) after two rounds (shared: training costs seconds)."""
    tmp_path = tmp_path_factory.mktemp("seg")
    clear_cache()
    config = seg_config(tmp_path)
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, config)
    run_round(engine, campaign_id)
    run_round(engine, campaign_id)
    return engine, campaign_id, config, tmp_path


def test_two_rounds_store_rounds_masks_scores_and_heatmaps(campaign) -> None:
    engine, campaign_id, config, tmp_path = campaign
    data = campaign_data(config)
    with session_scope(engine) as session:
        stored = session.get(Campaign, campaign_id)
        assert stored.task_kind == "segmentation"
        assert stored.labels == ["background", "disc", "square", "line", "dot"]
        rounds = session.scalars(select(Round).order_by(Round.index)).all()
        assert [(r.index, r.kind, r.status, r.labeled_count) for r in rounds] == [
            (1, RoundKind.active, RoundStatus.complete, SEEDS),
            (2, RoundKind.active, RoundStatus.complete, SEEDS + BATCH),
        ]
        for r in rounds:
            metrics = r.segmentation_metrics
            assert set(metrics) == {"miou", "per_class_iou", "pixel_accuracy", "pixel_ece", "pixels"}
            assert metrics["pixels"] == 30 * 32 * 32  # 25 % of 120 images are the test split
            ious = [v for v in metrics["per_class_iou"].values() if v is not None]
            assert set(metrics["per_class_iou"]) == set(stored.labels)
            assert metrics["miou"] == pytest.approx(np.mean(ious))
            assert r.test_accuracy == metrics["pixel_accuracy"] and r.test_ece == metrics["pixel_ece"]
            assert 0.5 < metrics["pixel_accuracy"] <= 1.0 and 0.0 <= metrics["pixel_ece"] < 0.5
            assert r.uncertainty["aggregation"] == "top_q" and r.uncertainty["map"] == "bald"
            assert r.uncertainty["samples"] == 4 and r.uncertainty["mode"] == "full_network"
        # Masks are labels: 8 given seeds, then one mask per selected sample from the oracle.
        annotations = session.scalars(select(Annotation).order_by(Annotation.id)).all()
        assert len(annotations) == SEEDS + 2 * BATCH
        assert {a.label for a in annotations} == {MASK_LABEL}
        uri_of = dict(session.execute(select(Sample.id, Sample.uri)).all())
        for a in annotations:
            assert np.array_equal(mask_from_png_bytes(a.mask), data.given_masks[uri_of[a.sample_id]])
        assert sum(a.source == "simulated" and a.round_id is None for a in annotations) == SEEDS
        # Every unlabeled pool image was scored; decomposition columns are image means in nats.
        pool = session.scalars(select(Sample).where(Sample.split == SampleSplit.pool)).all()
        assert len(pool) == 90
        for r, unlabeled in zip(rounds, (90 - SEEDS, 90 - SEEDS - BATCH)):
            scores = session.scalars(select(Score).where(Score.round_id == r.id)).all()
            assert len(scores) == unlabeled == r.pool_count
            for s in scores:
                assert s.predicted_class == -1 and 0.2 <= s.confidence <= 1.0
                assert s.total == pytest.approx(s.aleatoric + s.epistemic)
                assert 0.0 <= s.epistemic <= s.total <= np.log(5) + 1e-9
                # top-10 % BALD of an image is at least its mean BALD
                assert s.value >= s.epistemic - 1e-9
            assert r.mean_pool_entropy == pytest.approx(np.mean([s.total for s in scores]))
            selected = session.scalars(select(Selection).where(Selection.round_id == r.id)
                                       .order_by(Selection.rank)).all()
            assert len(selected) == BATCH
            by_sample = {s.sample_id: s.value for s in scores}
            assert [s.score for s in selected] == sorted(by_sample.values(), reverse=True)[:BATCH]
            # One heatmap PNG per selected sample, its summary stored beside its path.
            heatmaps = {h.sample_id: h for h in session.scalars(select(Heatmap).where(Heatmap.round_id == r.id))}
            assert set(heatmaps) == {s.sample_id for s in selected}
            for h in heatmaps.values():
                path = Path(h.path)
                assert path.parent == tmp_path / "heatmaps" / f"round-{r.index:03d}"
                # named by the sample's URI (shapes/<seed>/<number>.png) and the round, not a database id
                stem = uri_of[h.sample_id].removesuffix(".png").replace("/", "-")
                assert path.name == f"{stem}_round-{r.index:03d}.png"
                with Image.open(path) as png:
                    assert png.format == "PNG" and png.width > 3 * png.height
                assert h.map_name == "bald" and h.q == pytest.approx(0.1)
                assert 0.0 <= h.mean <= h.top_q_mean <= h.max <= np.log(5)
                # The map drawn is the map scored: its top-q mean is the image's score.
                assert h.top_q_mean == pytest.approx(by_sample[h.sample_id], rel=1e-6, abs=1e-9)
        assert len(list((tmp_path / "heatmaps").rglob("*.png"))) == 2 * BATCH


def test_miou_after_round_2_beats_the_seed_set(campaign) -> None:
    engine, *_ = campaign
    with session_scope(engine) as session:
        first, second = (r.segmentation_metrics["miou"] for r in session.scalars(select(Round).order_by(Round.index)))
    # 8 seed masks vs 24 masks at the same 200 training steps: measured 0.73 -> 0.82.
    assert first > 0.5
    assert second > first + 0.02


def test_a_rerun_of_a_finished_round_writes_nothing_twice(campaign) -> None:
    engine, campaign_id, _, _ = campaign
    from activelabel.campaign import steps

    with session_scope(engine) as session:
        round_id = session.scalars(select(Round.id).where(Round.index == 2)).one()
        counts = [session.query(t).count() for t in (Annotation, Score, Selection, Heatmap)]
    for step in (steps.train_step, steps.score_step, steps.select_step, steps.push_step, steps.sync_step):
        step(engine, round_id)
    with session_scope(engine) as session:
        assert [session.query(t).count() for t in (Annotation, Score, Selection, Heatmap)] == counts


def test_segmentation_settings_are_checked_before_anything_runs(tmp_path) -> None:
    assert seg_config(tmp_path).architecture == "unet_small"  # the kind's default model
    with pytest.raises(ConfigError, match="strategy 'margin' has no per-pixel form"):
        seg_config(tmp_path, strategy="margin")
    with pytest.raises(ConfigError, match="unknown aggregation 'median'"):
        seg_config(tmp_path, aggregation="median")
    assert seg_config(tmp_path, annotator="labelstudio", annotations_per_task=3).annotator == "labelstudio"
    # Served images are the user's own files: generated shapes have none to serve.
    served = seg_config(tmp_path, annotator="labelstudio", image_url_prefix="http://example.com/")
    clear_cache()
    with pytest.raises(ConfigError, match=r"annotator.image_url_prefix serves image files, but dataset "
                                          r"'shapes\?n=120&size=32' is in memory; leave it out"):
        labelstudio_parts(served, campaign_data(served))
    with pytest.raises(ConfigError, match="annotations_per_task > 1 with the simulated annotator"):
        seg_config(tmp_path, annotations_per_task=2)
    with pytest.raises(ConfigError, match="set task = \"segmentation\""):
        CampaignConfig(name="x", dataset="shapes")
    with pytest.raises(ConfigError, match="unknown task 'detection'"):
        CampaignConfig(name="x", task="detection")
    clear_cache()
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        campaign_data(seg_config(tmp_path, dataset="shapes?colour=1"))


def test_old_stored_settings_without_task_are_classification() -> None:
    stored = CampaignConfig(name="old").to_dict()
    for key in ("task", "aggregation", "aggregation_q", "heatmap_dir"):
        stored.pop(key)
    assert CampaignConfig.from_dict(stored).task == "classification"
