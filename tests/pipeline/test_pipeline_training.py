"""The seeded training loop: reproducible weights, real learning, epoch planning, callbacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torchvision

from activelabel.errors import WeightsFileError
from activelabel.pipeline.checkpoint import weights_digest
from activelabel.pipeline.datasets import load_dataset
from activelabel.pipeline.model import ModelSpec, build_model
from activelabel.pipeline.model_file import build_model_for_training
from activelabel.pipeline.prediction import predict_probabilities
from activelabel.pipeline.training import TrainingConfig, augment_batch, planned_epochs, train_model
from activelabel.pipeline.training_plan import optimizer_steps, steps_per_epoch

CPU = torch.device("cpu")
SPEC = ModelSpec(in_channels=1, num_classes=10, width=8)
QUICK = TrainingConfig(epochs=2, batch_size=16, min_steps=0)


def _digits(n: int) -> tuple[np.ndarray, np.ndarray]:
    data = load_dataset("digits")
    return data.images[:n], data.targets[:n]


def test_same_seed_same_weights() -> None:
    x, y = _digits(48)
    a = train_model(x, y, SPEC, QUICK, seed=3, device=CPU)
    b = train_model(x, y, SPEC, QUICK, seed=3, device=CPU)
    assert weights_digest(a) == weights_digest(b)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_different_seed_different_weights() -> None:
    x, y = _digits(48)
    a = train_model(x, y, SPEC, QUICK, seed=3, device=CPU)
    b = train_model(x, y, SPEC, QUICK, seed=4, device=CPU)
    assert weights_digest(a) != weights_digest(b)


def test_returns_model_in_eval_mode() -> None:
    x, y = _digits(32)
    model = train_model(x, y, SPEC, QUICK, seed=0, device=CPU)
    assert not any(m.training for m in model.modules())


def test_it_learns_digits() -> None:
    data = load_dataset("digits")
    x, y = data.images[:300], data.targets[:300]
    config = TrainingConfig(epochs=10, batch_size=32, min_steps=0)
    model = train_model(x, y, ModelSpec(in_channels=1, num_classes=10, width=16), config, seed=0, device=CPU)
    probs = predict_probabilities(model, x, samples=0, device=CPU, seed=0)[0]
    train_accuracy = float(np.mean(probs.argmax(axis=1) == y))
    # Chance is 0.1; a CNN that trains at all fits 300 digits far better (observed ~0.99).
    assert train_accuracy > 0.8, train_accuracy
    # And it generalises to digits it never saw (observed ~0.95).
    held_out = predict_probabilities(model, data.images[1000:1300], samples=0, device=CPU, seed=0)[0]
    test_accuracy = float(np.mean(held_out.argmax(axis=1) == data.targets[1000:1300]))
    assert test_accuracy > 0.7, test_accuracy


def test_on_epoch_called_once_per_planned_epoch_with_finite_losses() -> None:
    x, y = _digits(40)
    config = TrainingConfig(epochs=3, batch_size=16, min_steps=0)
    calls: list[tuple[int, int, float]] = []
    train_model(x, y, SPEC, config, seed=0, device=CPU, on_epoch=lambda *a: calls.append(a))
    assert [(e, total) for e, total, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    assert all(np.isfinite(loss) and loss > 0 for _, _, loss in calls)


def test_on_epoch_count_follows_min_steps() -> None:
    # 20 samples, batch 16 -> 2 steps per epoch; min_steps 6 -> 3 epochs although epochs=1.
    x, y = _digits(20)
    config = TrainingConfig(epochs=1, batch_size=16, min_steps=6)
    calls: list[tuple[int, int, float]] = []
    train_model(x, y, SPEC, config, seed=0, device=CPU, on_epoch=lambda *a: calls.append(a))
    assert [e for e, _, _ in calls] == [1, 2, 3]
    assert {total for _, total, _ in calls} == {3}


@pytest.mark.parametrize(
    ("n", "epochs", "batch", "min_steps", "expected"),
    [
        (100, 40, 32, 200, 50),  # ceil(100/32)=4 steps/epoch -> ceil(200/4)=50 > 40
        (1000, 40, 32, 200, 40),  # 32 steps/epoch -> 7 epochs suffice; epochs=40 wins
        (64, 5, 32, 0, 5),  # no minimum -> epochs as configured
        (1, 2, 32, 10, 10),  # one sample -> 1 step/epoch -> 10 epochs
        (0, 3, 32, 10, 10),  # steps per epoch never drops below 1
        (33, 1, 32, 7, 4),  # ceil(33/32)=2 steps/epoch -> ceil(7/2)=4
    ],
)
def test_planned_epochs(n: int, epochs: int, batch: int, min_steps: int, expected: int) -> None:
    config = TrainingConfig(epochs=epochs, batch_size=batch, min_steps=min_steps)
    assert planned_epochs(n, config, skips_batch_of_one=False) == expected


@pytest.mark.parametrize(("n", "per_epoch", "epochs", "steps"), [
    (25, 3, 67, 201),  # trial 15 F4: 3 batches of 8 and one of 1 (skipped): 67 x 3, not 50 x 3 = 150
    (19, 3, 67, 201),  # a last batch of 3 is a step
    (24, 3, 67, 201),
    (33, 4, 50, 200),
    (1, 1, 200, 200),  # one sample: its batch of one is the only one, and is trained on
])
def test_the_step_minimum_counts_the_steps_a_batch_norm_loop_takes(n, per_epoch, epochs, steps) -> None:
    config = TrainingConfig(epochs=40, batch_size=8, min_steps=200)
    assert steps_per_epoch(n, config, skips_batch_of_one=True) == per_epoch
    assert planned_epochs(n, config, skips_batch_of_one=True) == epochs
    assert optimizer_steps(n, config, skips_batch_of_one=True) == steps >= 200
    # Without batch norm the batch of one is a step: 25 samples, 4 steps an epoch, 50 epochs.
    assert (planned_epochs(25, config, skips_batch_of_one=False), optimizer_steps(25, config, skips_batch_of_one=False)) \
        == (50, 200)


def test_empty_labeled_set_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        train_model(
            np.zeros((0, 1, 8, 8), np.float32), np.zeros(0, np.int64), SPEC, QUICK, seed=0, device=CPU
        )


def _frozen_round(tmp_path, config: TrainingConfig):
    """A frozen-backbone resnet18 round on 16 grey 28x28 images, from a weights file written here."""
    torch.set_num_threads(1)
    torch.manual_seed(21)
    source = torchvision.models.resnet18(weights=None)
    with torch.no_grad():  # non-default batch-norm statistics, as in any trained file
        for module in source.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    rng = np.random.default_rng(0)
    x = rng.random((16, 1, 28, 28), dtype=np.float32)
    y = np.arange(16, dtype=np.int64) % 3
    spec = ModelSpec(in_channels=1, num_classes=3, architecture="resnet18", weights=str(path),
                     freeze_backbone=True, mean=(0.5,), std=(0.25,))
    torch.manual_seed(4)
    fresh = build_model_for_training(spec)  # what train_model starts from with seed=4
    model = train_model(x, y, spec, config, seed=4, device=CPU)
    return source.state_dict(), fresh, model, x


@pytest.mark.parametrize("augment", [False, True], ids=["cached_features", "augmented"])
def test_frozen_backbone_trains_only_the_classifier(tmp_path, augment: bool) -> None:
    config = TrainingConfig(epochs=3, batch_size=8, min_steps=0, augment=augment)
    source, fresh, model, x = _frozen_round(tmp_path, config)
    state = model.state_dict()
    for key, value in source.items():
        if key.startswith("fc."):
            continue
        expected = value.sum(dim=1, keepdim=True) if key == "conv1.weight" else value
        # Weights, running means/variances and batch counters all as loaded.
        assert torch.equal(state[f"body.{key}"], expected), key
    head_before = fresh.classifier.state_dict()
    for key, value in model.classifier.state_dict().items():
        assert not torch.allclose(value, head_before[key]), key
    assert all(p.requires_grad for p in model.parameters())  # the returned model is not left frozen
    assert not any(m.training for m in model.modules())

    probs = predict_probabilities(model, x, samples=3, device=CPU, seed=0)
    assert probs.shape == (3, 16, 3) and probs.dtype == np.float32
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    assert not np.allclose(probs[0], probs[1])  # head dropout sampled


def test_frozen_small_cnn_keeps_its_batch_norm_statistics() -> None:
    x, y = _digits(32)
    spec = ModelSpec(in_channels=1, num_classes=10, width=8, freeze_backbone=True)
    torch.manual_seed(0)
    fresh = build_model(spec)
    model = train_model(x, y, spec, QUICK, seed=0, device=CPU)
    before, after = fresh.state_dict(), model.state_dict()
    for key in after:
        same = torch.equal(before[key], after[key])
        # features.* and the hidden layer head.0 are the backbone; head.3 is the output layer.
        assert same == (not key.startswith("head.3.")), key


def test_a_weights_file_that_does_not_fit_stops_training_before_it_starts(tmp_path) -> None:
    path = tmp_path / "wrong.pth"
    torch.save(build_model(ModelSpec(in_channels=1, num_classes=10, width=4)).state_dict(), path)
    spec = ModelSpec(in_channels=1, num_classes=10, width=8, weights=str(path))
    calls: list[tuple] = []
    with pytest.raises(WeightsFileError, match="wrong.pth"):
        train_model(*_digits(16), spec, QUICK, seed=0, device=CPU, on_epoch=lambda *a: calls.append(a))
    assert calls == []


def test_augmented_training_is_seeded_and_differs_from_plain() -> None:
    x, y = _digits(32)
    augmented = TrainingConfig(epochs=2, batch_size=16, min_steps=0, augment=True, augment_flip=True)
    a = train_model(x, y, SPEC, augmented, seed=3, device=CPU)
    b = train_model(x, y, SPEC, augmented, seed=3, device=CPU)
    plain = train_model(x, y, SPEC, QUICK, seed=3, device=CPU)
    assert weights_digest(a) == weights_digest(b)
    assert weights_digest(a) != weights_digest(plain)


def test_augment_batch_shifts_by_at_most_an_eighth_and_flips_only_when_asked() -> None:
    # Two pixels per 16x24 image, away from the borders: 1 at column 10, 2 at column 11, so a
    # flip shows as the 2 left of the 1. Shifts: <= 16/8 = 2 rows, <= 24/8 = 3 columns.
    x = torch.zeros(64, 2, 16, 24)
    x[:, :, 7, 10] = 1.0
    x[:, :, 7, 11] = 2.0
    shifts = []
    for flip in (False, True):
        out = augment_batch(x, torch.Generator().manual_seed(0), flip=flip)
        assert out.shape == x.shape and torch.equal(out.sum(dim=(2, 3)), x.sum(dim=(2, 3)))
        for image in out:
            assert torch.equal(image[0], image[1])  # both channels move together
            (r1, c1), = torch.nonzero(image[0] == 1.0).tolist()
            (r2, c2), = torch.nonzero(image[0] == 2.0).tolist()
            flipped = c2 < c1
            assert r1 == r2 and abs(c2 - c1) == 1 and (flipped <= flip)
            col = 23 - c1 if flipped else c1  # where the 1 was before the flip
            shifts.append((r1 - 7, col - 10, flipped))
    rows, cols, flips = zip(*shifts)
    assert (min(rows), max(rows), min(cols), max(cols)) == (-2, 2, -3, 3)  # the full range, no more
    assert set(flips) == {False, True}
    # Same generator seed, same augmentation; images smaller than 8 pixels are not shifted.
    torch.testing.assert_close(
        augment_batch(x, torch.Generator().manual_seed(5)), augment_batch(x, torch.Generator().manual_seed(5))
    )
    small = torch.rand(4, 1, 7, 7)
    assert torch.equal(augment_batch(small, torch.Generator().manual_seed(0)), small)
