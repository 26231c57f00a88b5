"""The seeded training loop: reproducible weights, real learning, epoch planning, callbacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from activelabel.pipeline.checkpoint import weights_digest
from activelabel.pipeline.datasets import load_dataset
from activelabel.pipeline.model import ModelSpec
from activelabel.pipeline.prediction import predict_probabilities
from activelabel.pipeline.training import TrainingConfig, planned_epochs, train_model

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
    assert planned_epochs(n, config) == expected


def test_empty_labeled_set_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        train_model(
            np.zeros((0, 1, 8, 8), np.float32), np.zeros(0, np.int64), SPEC, QUICK, seed=0, device=CPU
        )
