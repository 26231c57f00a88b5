"""Issue 10's class-weighted aggregation with the labeled masks' inverse class frequencies, and a
user weights file for a segmentation campaign's U-Net (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select

from activelabel.acquisition.pixelwise import aggregate, class_pixel_counts, inverse_frequency_weights, pixel_maps
from activelabel.campaign import prepare_campaign
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import campaign_data, clear_cache
from activelabel.campaign.model_settings import check_model
from activelabel.campaign.setup import check_dataset
from activelabel.campaign.segmentation_round import CLASS_PIXELS, load_segmenter, segmentation_spec
from activelabel.errors import WeightsFileError
from activelabel.pipeline.masks import mask_from_png_bytes
from activelabel.pipeline.segmentation import predict_segmentation_stream, train_segmentation
from activelabel.pipeline.segmentation_model import (
    SegmentationSpec,
    build_segmentation_model,
    load_segmentation_weights,
)
from activelabel.pipeline.training import TrainingConfig
from activelabel.storage import Annotation, Campaign, ModelCheckpoint, Round, open_engine, session_scope
from tests_support_rounds import run_round

SEEDS, BATCH = 8, 16


def seg_config(tmp_path: Path, **changes) -> CampaignConfig:
    settings = dict(
        name="shapes-cw", task="segmentation", dataset="shapes?n=120&size=32", strategy="entropy",
        initial_labeled=SEEDS, min_labels_to_train=SEEDS, batch_size=BATCH, mc_samples=4,
        # exactly 5 epochs (a few optimizer steps), not the 200-step minimum: these tests assert
        # stored weights, class frequencies and a weights file's tensors, never segmentation quality
        epochs=5, fixed_epochs=True, test_fraction=0.25, rounds=1, device="cpu", heatmap_dir=str(tmp_path / "heatmaps"),
        aggregation="class_weighted",
    )
    return CampaignConfig(**(settings | changes))


def _entropy(p: np.ndarray) -> float:
    return float(-(p * np.log(p)).sum())


def test_class_weighted_lets_a_rare_class_uncertain_pixel_dominate() -> None:
    # Image A: 3 background pixels (0.9, 0.1) and 1 pixel of the rare class 1 at (0.45, 0.55).
    # Image B: 4 background pixels at (0.8, 0.2): more uncertain background, no rare class.
    a = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.45, 0.55]])
    b = np.array([[0.8, 0.2]] * 4)
    probs = np.stack([a, b]).transpose(0, 2, 1).reshape(2, 2, 2, 2)[None]  # [T=1, N=2, C=2, 2, 2]
    probs = np.concatenate([probs, probs])  # T = 2 identical passes
    maps = pixel_maps(probs)
    e_bg, e_rare, e_b = _entropy(a[0]), _entropy(a[3]), _entropy(b[0])
    assert maps.predicted[0].reshape(-1).tolist() == [0, 0, 0, 1]
    # labeled masks: 99 background pixels per rare one
    weights = inverse_frequency_weights(class_pixel_counts([np.array([[0] * 99 + [1]])], 2))
    assert weights == pytest.approx([0.01, 0.99])
    mean = aggregate(maps.entropy, "mean")
    weighted = aggregate(maps.entropy, "class_weighted", predicted=maps.predicted, class_weights=weights)
    assert mean == pytest.approx([(3 * e_bg + e_rare) / 4, e_b])
    assert weighted == pytest.approx([(3 * 0.01 * e_bg + 0.99 * e_rare) / (3 * 0.01 + 0.99), e_b])
    assert mean[1] > mean[0]  # the mean ranks the all-background image first
    assert weighted[0] > weighted[1]  # weighted, the rare class's uncertain pixel wins
    assert weighted[0] == pytest.approx(0.6775, abs=1e-3) and mean[0] == pytest.approx(0.4159, abs=1e-3)


def test_inverse_frequency_weights_values_and_unseen_class() -> None:
    masks = [np.array([[0, 0, 0], [1, 255, 255]]), np.array([[0, 0, 0], [1, 1, 2]])]
    counts = class_pixel_counts(masks, 4, ignore_index=255)
    assert counts.tolist() == [6, 3, 1, 0]
    # raw 1/f = 10/6, 10/3, 10, and the unseen class gets the largest observed (10); sum 25
    assert inverse_frequency_weights(counts) == pytest.approx([10 / 6 / 25, 10 / 3 / 25, 0.4, 0.4])
    assert inverse_frequency_weights([0, 0, 0]) == pytest.approx([1 / 3] * 3)
    with pytest.raises(Exception, match="outside 0..3"):
        class_pixel_counts([np.array([[7]])], 4)


@pytest.fixture(scope="module")
def one_round(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("cw")
    clear_cache()
    config = seg_config(tmp_path)
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, config)
    run_round(engine, campaign_id)
    return engine, campaign_id, config, tmp_path


def test_round_stores_inverse_frequencies_of_the_masks_it_trained_on(one_round) -> None:
    engine, campaign_id, config, _ = one_round
    with session_scope(engine) as session:
        rnd = session.scalars(select(Round).where(Round.campaign_id == campaign_id)).one()
        labels = session.get(Campaign, campaign_id).labels
        seeds = session.scalars(select(Annotation).where(Annotation.round_id.is_(None))).all()
        checkpoint = session.scalars(select(ModelCheckpoint).where(ModelCheckpoint.round_id == rnd.id)).one()
        assert len(seeds) == SEEDS and rnd.labeled_count == SEEDS
        masks = [mask_from_png_bytes(a.mask) for a in seeds]
        uncertainty, stored_pixels = rnd.uncertainty, checkpoint.architecture[CLASS_PIXELS]
    counts = np.zeros(len(labels), np.int64)
    for m in masks:
        counts += np.bincount(m[m != 255].reshape(-1), minlength=len(labels))
    f = counts / counts.sum()
    expected = np.where(counts > 0, 1 / np.where(counts > 0, f, 1), 0)
    expected[counts == 0] = expected.max()
    expected /= expected.sum()
    assert uncertainty["aggregation"] == "class_weighted"
    assert uncertainty["class_pixels"] == counts.tolist() == stored_pixels
    assert sum(counts) == SEEDS * 32 * 32
    assert uncertainty["class_weights"] == pytest.approx(expected.tolist())
    assert uncertainty["class_weights"][0] == min(uncertainty["class_weights"])  # background is commonest


def test_weights_file_from_a_trained_round_starts_a_new_campaign(one_round, tmp_path) -> None:
    engine, campaign_id, config, _ = one_round
    with session_scope(engine) as session:
        checkpoint = session.scalars(select(ModelCheckpoint)).one()
        session.expunge(checkpoint)
    trained = load_segmenter(checkpoint, torch.device("cpu"))
    file = tmp_path / "seg-weights.pt"
    torch.save(trained.state_dict(), file)
    # the new campaign's network, built as its rounds build it, holds the file's tensors and
    # predicts the trained network's masks before any training
    new = seg_config(tmp_path, name="from-weights", weights=str(file), seed=7)
    data = campaign_data(new)
    spec = segmentation_spec(new, data.in_channels, len(data.labels))
    assert spec.weights == str(file)
    model = build_segmentation_model(spec)
    load_segmentation_weights(model, spec.weights)
    saved = torch.load(file, weights_only=True)
    assert set(model.state_dict()) == set(saved)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    images = data.store.read(data.pool[:6])
    cpu = torch.device("cpu")
    before = next(iter(predict_segmentation_stream(model.eval(), [images], samples=0, device=cpu, seed=0)))
    donor = next(iter(predict_segmentation_stream(trained, [images], samples=0, device=cpu, seed=0)))
    assert np.array_equal(before.argmax(axis=2), donor.argmax(axis=2))
    # training starts from the file: with a zero learning rate every parameter stays the file's
    frozen = train_segmentation(data.store.read(data.pool[:4]), np.stack([data.given_masks[u] for u in data.pool[:4]]),
                                spec, TrainingConfig(epochs=1, batch_size=2, learning_rate=0.0, min_steps=1),
                                seed=0, device=cpu)
    assert all(torch.equal(p.detach(), saved[k]) for k, p in frozen.named_parameters())
    # the settings check accepts it (it was refused by name); the round trains from it
    check_model(new, data.in_channels, len(data.labels))
    other = open_engine(f"sqlite:///{tmp_path}/new.db")
    run_round(other, prepare_campaign(other, new))
    with session_scope(other) as session:
        assert session.scalars(select(ModelCheckpoint)).one().architecture["weights"] == str(file)


def test_other_class_count_keeps_the_trunk_and_a_fresh_head(tmp_path) -> None:
    donor = build_segmentation_model(SegmentationSpec(in_channels=3, num_classes=3, width=8))
    torch.save(donor.state_dict(), tmp_path / "three.pt")
    model = build_segmentation_model(SegmentationSpec(in_channels=3, num_classes=5, width=8))
    fresh_head = model.head[1].weight.clone()
    loaded = load_segmentation_weights(model, tmp_path / "three.pt")
    assert not any(k.startswith("head.") for k in loaded)
    assert torch.equal(model.trunk.enc1[0].weight, donor.trunk.enc1[0].weight)
    assert torch.equal(model.head[1].weight, fresh_head)


def test_mismatched_weights_file_names_file_and_keys_and_writes_nothing(tmp_path) -> None:
    wide = build_segmentation_model(SegmentationSpec(in_channels=3, num_classes=5, width=8))
    file = tmp_path / "width8.pt"
    torch.save(wide.state_dict(), file)
    config = seg_config(tmp_path, name="mismatch", weights=str(file))  # width 16 by default
    with pytest.raises(WeightsFileError) as caught:
        check_dataset(config)  # what `activelabel run` checks before it opens the database
    message = str(caught.value)
    assert str(file) in message and "unet_small (width 16, 3 channel(s), 5 classes)" in message
    assert "shape mismatch(es), file vs network (trunk.bottom.0.weight [32, 16, 3, 3] vs [64, 32, 3, 3]" in message
    assert "same architecture" in message
    # an smp_unet file for the built-in U-Net: keys named, nothing loaded
    smp = build_segmentation_model(SegmentationSpec(in_channels=3, num_classes=5, architecture="smp_unet"))
    torch.save(smp.state_dict(), tmp_path / "smp.pt")
    target = build_segmentation_model(SegmentationSpec(in_channels=3, num_classes=5))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(WeightsFileError, match=r"smp.pt for unet_small .*missing key\(s\) \(trunk\.bottom"):
        load_segmentation_weights(target, tmp_path / "smp.pt")
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_smp_unet_campaign_accepts_its_own_weights_file(tmp_path) -> None:
    spec = SegmentationSpec(in_channels=3, num_classes=5, architecture="smp_unet", encoder="resnet18")
    donor = build_segmentation_model(spec)
    torch.save({"state_dict": donor.state_dict()}, tmp_path / "smp.pt")
    config = seg_config(tmp_path, architecture="smp_unet", weights=str(tmp_path / "smp.pt"))
    data = campaign_data(config)
    check_model(config, data.in_channels, len(data.labels))
    model = build_segmentation_model(segmentation_spec(config, data.in_channels, len(data.labels)))
    load_segmentation_weights(model, tmp_path / "smp.pt")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in donor.state_dict().items())
