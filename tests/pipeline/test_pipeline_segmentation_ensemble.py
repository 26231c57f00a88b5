"""A list of U-Nets (a deep ensemble) through the segmentation prediction and measuring paths:
``[M x T, b, C, H, W]`` member-major, and mIoU / pixel accuracy of the members' mean softmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activelabel.pipeline.segmentation import evaluate_segmentation, predict_segmentation_stream
from activelabel.pipeline.segmentation_metrics import SegmentationMeter
from activelabel.pipeline.segmentation_model import SegmentationSpec, build_segmentation_model

CPU = torch.device("cpu")


def _unets(count: int) -> list:
    nets = []
    for m in range(count):
        torch.manual_seed(100 + m)
        nets.append(build_segmentation_model(SegmentationSpec(in_channels=1, num_classes=3, dropout=0.5)).eval())
    return nets


def test_an_ensemble_streams_member_major_passes_and_member_zero_is_the_single_model() -> None:
    members = _unets(2)
    images = np.random.default_rng(0).random((3, 1, 16, 16)).astype(np.float32)
    both = next(predict_segmentation_stream(members, [images], samples=3, device=CPU, seed=7))
    alone = [next(predict_segmentation_stream(net, [images], samples=3, device=CPU, seed=7)) for net in members]
    assert both.shape == (6, 3, 3, 16, 16)
    np.testing.assert_allclose(both[:3], alone[0], atol=1e-6)  # member 0's masks are the single model's
    deterministic = next(predict_segmentation_stream(members, [images], samples=0, device=CPU, seed=7))
    assert deterministic.shape == (2, 3, 3, 16, 16)
    with torch.no_grad():
        for m, net in enumerate(members):
            expected = torch.softmax(net(torch.from_numpy(images)), dim=1).numpy()
            np.testing.assert_allclose(deterministic[m], expected, atol=1e-5)


def test_an_ensemble_is_measured_on_the_members_mean_softmax() -> None:
    members = _unets(2)
    rng = np.random.default_rng(1)
    images = rng.random((4, 1, 16, 16)).astype(np.float32)
    masks = rng.integers(0, 3, size=(4, 16, 16))
    measured = evaluate_segmentation(members, images, masks, device=CPU, chunk_size=3)
    with torch.no_grad():
        mean = np.mean([torch.softmax(net(torch.from_numpy(images)), dim=1).numpy() for net in members], axis=0)
    meter = SegmentationMeter(3)
    meter.update(mean, masks)
    expected = meter.result()
    assert measured.pixel_accuracy == pytest.approx(expected.pixel_accuracy)
    assert measured.pixel_ece == pytest.approx(expected.pixel_ece, abs=1e-6)
    assert measured.pixels == masks.size
    single = evaluate_segmentation(members[0], images, masks, device=CPU)
    assert (single.pixel_accuracy, single.pixel_ece) != (measured.pixel_accuracy, measured.pixel_ece)
