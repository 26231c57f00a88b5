"""Checkpoints: weights to bytes and back give the same model, and the digest tracks values."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from activelabel.pipeline.checkpoint import load_model, serialize_weights, weights_digest
from activelabel.pipeline.datasets import load_dataset
from activelabel.pipeline.model import ModelSpec, build_model
from activelabel.pipeline.prediction import predict_probabilities
from activelabel.pipeline.training import TrainingConfig, train_model

CPU = torch.device("cpu")
SPEC = ModelSpec(in_channels=1, num_classes=10, width=8)


@pytest.fixture(scope="module")
def trained():
    data = load_dataset("digits")
    config = TrainingConfig(epochs=2, batch_size=16, min_steps=0)
    return train_model(data.images[:48], data.targets[:48], SPEC, config, seed=1, device=CPU)


def test_round_trip_same_weights_and_predictions(trained) -> None:
    blob = serialize_weights(trained)
    assert isinstance(blob, bytes) and len(blob) > 0
    restored = load_model(ModelSpec.from_dict(SPEC.to_dict()), blob, CPU)

    assert weights_digest(restored) == weights_digest(trained)
    original_state = trained.state_dict()
    for key, value in restored.state_dict().items():
        assert torch.equal(value, original_state[key]), key
    assert not any(m.training for m in restored.modules())  # loaded ready for inference

    x = load_dataset("digits").images[100:130]
    for samples in (0, 4):
        a = predict_probabilities(trained, x, samples=samples, device=CPU, seed=9)
        b = predict_probabilities(restored, x, samples=samples, device=CPU, seed=9)
        np.testing.assert_array_equal(a, b)


def test_serialized_state_loads_with_weights_only(trained) -> None:
    state = torch.load(io.BytesIO(serialize_weights(trained)), weights_only=True)
    assert set(state) == set(trained.state_dict())
    assert all(t.device.type == "cpu" for t in state.values())


def test_digest_changes_when_one_weight_changes(trained) -> None:
    model = load_model(SPEC, serialize_weights(trained), CPU)
    before = weights_digest(model)
    with torch.no_grad():
        model.head[-1].bias[0] += 1e-3
    assert weights_digest(model) != before


def test_digest_is_hex_sha256_and_depends_on_init_seed() -> None:
    torch.manual_seed(0)
    a = build_model(SPEC)
    torch.manual_seed(0)
    b = build_model(SPEC)
    torch.manual_seed(1)
    c = build_model(SPEC)
    assert weights_digest(a) == weights_digest(b)
    assert weights_digest(a) != weights_digest(c)
    assert len(weights_digest(a)) == 64
    int(weights_digest(a), 16)


def test_loading_into_a_wrong_architecture_fails(trained) -> None:
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_model(ModelSpec(in_channels=1, num_classes=10, width=4), serialize_weights(trained), CPU)


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec(in_channels=1, num_classes=3, width=4, mean=(0.5,), std=(0.25,)),
        ModelSpec(in_channels=1, num_classes=3, architecture="resnet18", dropout=0.3, mean=(0.5,), std=(0.25,)),
    ],
    ids=["small_cnn", "resnet18"],
)
def test_round_trip_for_each_architecture_never_reads_the_weights_file(spec: ModelSpec) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(3)
    model = build_model(spec).train()
    with torch.no_grad():  # move the batch-norm statistics off their defaults
        model(torch.rand(8, 1, 28, 28))
    model.eval()
    stored = ModelSpec.from_dict(spec.to_dict() | {"weights": "/nonexistent/start.pt"})
    restored = load_model(stored, serialize_weights(model), CPU)  # the checkpoint is the weights
    assert weights_digest(restored) == weights_digest(model)
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    for samples in (0, 3):
        np.testing.assert_array_equal(
            predict_probabilities(model, x, samples=samples, device=CPU, seed=1),
            predict_probabilities(restored, x, samples=samples, device=CPU, seed=1),
        )
