"""Segmentation networks, training with ignore_index, MC-dropout prediction, metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from activelabel.errors import ConfigError, WeightsFileError
from activelabel.pipeline.metrics import expected_calibration_error
from activelabel.pipeline.segmentation import (
    evaluate_segmentation,
    predict_masks,
    predict_segmentation_stream,
    segmentation_scores,
    train_segmentation,
)
from activelabel.pipeline.segmentation_metrics import SegmentationMeter, segmentation_metrics
from activelabel.pipeline.segmentation_model import (
    SegmentationSpec,
    build_segmentation_model,
    load_segmentation_weights,
)
from activelabel.pipeline.shapes import make_shapes
from activelabel.pipeline.training import TrainingConfig

CPU = torch.device("cpu")


def test_metrics_hand_computed() -> None:
    # truth [[0, 0], [1, 255]]; prediction [[0, 1], [1, 1]] (last pixel ignored)
    probs = np.zeros((1, 2, 2, 2))
    probs[0, :, 0, 0] = [0.9, 0.1]
    probs[0, :, 0, 1] = [0.4, 0.6]
    probs[0, :, 1, 0] = [0.2, 0.8]
    probs[0, :, 1, 1] = [0.0, 1.0]
    truth = np.array([[[0, 0], [1, 255]]])
    result = segmentation_metrics(probs, truth)
    # class 0: TP 1, FN 1, FP 0 -> 1/2; class 1: TP 1, FP 1 -> 1/2
    np.testing.assert_allclose(result.per_class_iou, [0.5, 0.5])
    assert result.miou == pytest.approx(0.5)
    assert result.pixel_accuracy == pytest.approx(2 / 3)
    assert result.pixels == 3
    flat_p = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]])
    assert result.pixel_ece == pytest.approx(expected_calibration_error(flat_p, np.array([0, 0, 1])))
    # a class absent from truth and prediction has no IoU and does not count in the mean
    three = np.concatenate([probs, np.zeros((1, 1, 2, 2))], axis=1)
    result3 = segmentation_metrics(three, truth)
    assert np.isnan(result3.per_class_iou[2]) and result3.miou == pytest.approx(0.5)


def test_meter_chunked_equals_whole() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=(9, 8, 8)).transpose(0, 3, 1, 2)
    truth = rng.integers(0, 4, size=(9, 8, 8))
    truth[rng.random(truth.shape) < 0.1] = 255
    whole = segmentation_metrics(probs, truth)
    meter = SegmentationMeter(4)
    for s in range(0, 9, 4):
        meter.update(probs[s : s + 4], truth[s : s + 4])
    parts = meter.result()
    np.testing.assert_array_equal(whole.per_class_iou, parts.per_class_iou)
    assert whole.pixel_ece == pytest.approx(parts.pixel_ece, abs=1e-12)
    flat = np.moveaxis(probs, 1, -1)[truth != 255]
    assert whole.pixel_ece == pytest.approx(expected_calibration_error(flat, truth[truth != 255]), abs=1e-12)


@pytest.mark.parametrize("architecture", ["unet_small", "smp_unet"])
def test_networks_shape_and_head_dropout(architecture: str) -> None:
    spec = SegmentationSpec(in_channels=3, num_classes=5, architecture=architecture, dropout=0.3)
    model = build_segmentation_model(spec)
    assert isinstance(model.head[0], torch.nn.Dropout) and model.head[0].p == 0.3
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 5, 64, 64)
    with pytest.raises(ConfigError, match="divisible by"):
        model(torch.zeros(1, 3, 66, 66))


def test_spec_errors_and_round_trip() -> None:
    spec = SegmentationSpec(in_channels=3, num_classes=5, architecture="smp_unet", encoder="mobilenet_v2")
    assert SegmentationSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ConfigError, match="unknown segmentation architecture"):
        SegmentationSpec(in_channels=3, num_classes=5, architecture="deeplab")
    with pytest.raises(ConfigError, match="encoder"):
        SegmentationSpec(in_channels=3, num_classes=5, architecture="smp_unet", encoder="vit_huge")
    with pytest.raises(ConfigError, match="2 classes"):
        SegmentationSpec(in_channels=3, num_classes=1)


def test_mc_prediction_shapes_masks_shared_and_chunk_invariant() -> None:
    spec = SegmentationSpec(in_channels=3, num_classes=5, width=8, dropout=0.5)
    torch.manual_seed(0)
    model = build_segmentation_model(spec).eval()
    images = make_shapes(5, seed=0, size=32).images
    whole = np.concatenate(list(predict_segmentation_stream(model, [images], samples=4, device=CPU, seed=7)), axis=1)
    parts = np.concatenate(
        list(predict_segmentation_stream(model, [images[:2], images[2:]], samples=4, device=CPU, seed=7)), axis=1
    )
    assert whole.shape == (4, 5, 5, 32, 32) and whole.dtype == np.float32
    np.testing.assert_allclose(whole.sum(axis=2), 1.0, atol=1e-5)
    np.testing.assert_allclose(whole, parts, atol=1e-5)  # an image's output does not depend on its chunk
    assert np.abs(whole[0] - whole[1]).max() > 1e-3  # passes differ
    again = np.concatenate(list(predict_segmentation_stream(model, [images], samples=4, device=CPU, seed=7)), axis=1)
    np.testing.assert_array_equal(whole, again)
    single = next(predict_segmentation_stream(model, [images], samples=0, device=CPU, seed=0))
    with torch.no_grad():
        plain = torch.softmax(model(torch.from_numpy(images)), dim=1).numpy()
    np.testing.assert_allclose(single[0], plain, atol=1e-5)
    assert model.training is False and model.head[0].training is False  # modes restored


def test_training_learns_shapes_and_scores_stream() -> None:
    train = make_shapes(32, seed=0, size=32)
    test = make_shapes(16, seed=1, size=32)
    spec = SegmentationSpec(in_channels=3, num_classes=5, width=8, dropout=0.2)
    config = TrainingConfig(epochs=1, batch_size=8, learning_rate=5e-3, min_steps=120, augment=True)
    model = train_segmentation(train.images, train.masks, spec, config, seed=0, device=CPU)
    result = evaluate_segmentation(model, test.images, test.masks, device=CPU)
    untrained = evaluate_segmentation(build_segmentation_model(spec).eval(), test.images, test.masks, device=CPU)
    assert result.per_class_iou[0] > 0.9  # background
    assert result.per_class_iou[1] > 0.5  # discs
    assert result.miou > untrained.miou + 0.2
    masks = predict_masks(model, test.images, device=CPU, chunk_size=5)
    assert masks.shape == (16, 32, 32) and set(np.unique(masks)) <= set(range(5))

    scored = segmentation_scores(
        model, test.images, samples=6, device=CPU, seed=3, map_name="bald", how="top_q", chunk_size=5, keep=[0, 11]
    )
    again = segmentation_scores(
        model, test.images, samples=6, device=CPU, seed=3, map_name="bald", how="top_q", chunk_size=16
    )
    np.testing.assert_allclose(scored.scores, again.scores, rtol=1e-4, atol=1e-7)
    assert scored.scores.shape == (16,) and (scored.scores > 0).all()
    assert sorted(scored.kept) == [0, 11] and scored.kept[11].bald.shape == (1, 32, 32)
    # uncertainty concentrates at object boundaries: more BALD next to a class change than far from one
    maps = scored.kept[11]
    truth = test.masks[11]
    edge = np.zeros_like(truth, dtype=bool)
    edge[:, 1:] |= truth[:, 1:] != truth[:, :-1]
    edge[:, :-1] |= truth[:, 1:] != truth[:, :-1]
    edge[1:] |= truth[1:] != truth[:-1]
    edge[:-1] |= truth[1:] != truth[:-1]
    assert maps.entropy[0][edge].mean() > 1.3 * maps.entropy[0][~edge].mean()


def test_ignore_index_pixels_give_no_gradient() -> None:
    data = make_shapes(4, seed=0, size=32)
    spec = SegmentationSpec(in_channels=3, num_classes=5, width=8)
    config = TrainingConfig(epochs=1, batch_size=4, min_steps=3)
    ignored = np.full_like(data.masks, 255)
    model = train_segmentation(data.images, ignored, spec, config, seed=5, device=CPU)
    torch.manual_seed(5)
    fresh = build_segmentation_model(spec)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        if "running" not in name and "num_batches" not in name:
            assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="outside 0..4"):
        train_segmentation(data.images, np.full_like(data.masks, 7), spec, config, seed=0, device=CPU)


def test_user_weights_file(tmp_path: Path) -> None:
    spec = SegmentationSpec(in_channels=3, num_classes=5, architecture="smp_unet", encoder="resnet18")
    donor = build_segmentation_model(spec)
    torch.save(donor.trunk.encoder.state_dict(), tmp_path / "encoder.pt")
    torch.save(donor.state_dict(), tmp_path / "full.pt")
    target = build_segmentation_model(spec)
    loaded = load_segmentation_weights(target, tmp_path / "encoder.pt")
    assert all(k.startswith("trunk.encoder.") for k in loaded)
    assert torch.equal(target.trunk.encoder.conv1.weight, donor.trunk.encoder.conv1.weight)
    assert not torch.equal(target.head[1].weight, donor.head[1].weight)  # the head stays fresh
    load_segmentation_weights(target, tmp_path / "full.pt")
    assert torch.equal(target.head[1].weight, donor.head[1].weight)
    small = build_segmentation_model(SegmentationSpec(in_channels=3, num_classes=5))
    with pytest.raises(WeightsFileError, match=r"full.pt for unet_small.*unexpected"):
        load_segmentation_weights(small, tmp_path / "full.pt")
    with pytest.raises(WeightsFileError, match=r"nope.pt.*does not exist"):
        load_segmentation_weights(small, tmp_path / "nope.pt")
    # training starts from the weights file
    data = make_shapes(2, seed=0, size=32)
    weighted = SegmentationSpec(in_channels=3, num_classes=5, width=8, weights=str(tmp_path / "small.pt"))
    torch.save(build_segmentation_model(SegmentationSpec(in_channels=3, num_classes=5, width=8)).state_dict(), tmp_path / "small.pt")
    model = train_segmentation(data.images, data.masks, weighted, TrainingConfig(epochs=1, batch_size=2, min_steps=1), seed=0, device=CPU)
    assert model.head[1].weight.shape == (5, 8, 1, 1)
