"""The CNN and MC-dropout prediction: shapes, randomness, seeding, module modes, chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from activelabel.pipeline.model import ModelSpec, SmallCNN, build_model
from activelabel.pipeline.prediction import mc_dropout, predict_probabilities

CPU = torch.device("cpu")
SPEC = ModelSpec(in_channels=1, num_classes=10, width=8)


def _images(n: int, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, size, size), dtype=np.float32)


@pytest.fixture
def model() -> SmallCNN:
    """A small CNN whose batch-norm running stats are non-trivial (one train-mode pass)."""
    torch.manual_seed(0)
    net = build_model(SPEC)
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(_images(16, seed=99)) * 3.0 + 1.0)
    net.eval()
    return net


def _modes(net: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in net.named_modules()}


def _bn_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.clone()
        for k, v in net.state_dict().items()
        if "running" in k or "num_batches_tracked" in k
    }


def test_model_spec_round_trips_through_dict() -> None:
    data = SPEC.to_dict()
    assert data == {
        "name": "small_cnn",
        "in_channels": 1,
        "num_classes": 10,
        "width": 8,
        "conv_dropout": 0.25,
        "head_dropout": 0.5,
    }
    assert ModelSpec.from_dict(data) == SPEC


@pytest.mark.parametrize("size", [8, 28])
def test_model_output_shape_for_any_square_size(size: int) -> None:
    net = build_model(ModelSpec(in_channels=1, num_classes=7, width=4)).eval()
    out = net(torch.zeros(3, 1, size, size))
    assert out.shape == (3, 7)


def test_mc_samples_shape_dtype_and_rows_sum_to_one(model: SmallCNN) -> None:
    probs = predict_probabilities(model, _images(12), samples=5, device=CPU, seed=0)
    assert probs.shape == (5, 12, 10)
    assert probs.dtype == np.float32
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=-1), np.ones((5, 12)), atol=1e-5)


def test_mc_passes_differ_with_dropout(model: SmallCNN) -> None:
    probs = predict_probabilities(model, _images(12), samples=4, device=CPU, seed=0)
    for t in range(1, 4):
        assert not np.allclose(probs[0], probs[t]), f"pass {t} equals pass 0: dropout is off"


def test_same_seed_same_output_different_seed_different(model: SmallCNN) -> None:
    x = _images(12)
    a = predict_probabilities(model, x, samples=3, device=CPU, seed=7)
    # Disturb the global RNG in between: the function must reseed itself.
    torch.rand(1000)
    b = predict_probabilities(model, x, samples=3, device=CPU, seed=7)
    c = predict_probabilities(model, x, samples=3, device=CPU, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_samples_zero_is_one_deterministic_eval_pass(model: SmallCNN) -> None:
    x = _images(12)
    probs = predict_probabilities(model, x, samples=0, device=CPU, seed=0)
    assert probs.shape == (1, 12, 10)
    again = predict_probabilities(model, x, samples=0, device=CPU, seed=123)
    np.testing.assert_array_equal(probs, again)  # the seed is irrelevant without dropout
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(x)), dim=-1).numpy()
    np.testing.assert_allclose(probs[0], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("start_in_train_mode", [True, False])
def test_mc_dropout_modes_inside_and_restored_after(model: SmallCNN, start_in_train_mode: bool) -> None:
    model.train(start_in_train_mode)
    before = _modes(model)
    assert all(mode is start_in_train_mode for mode in before.values())
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(dropouts) == 2 and len(norms) == 2

    with mc_dropout(model) as inside:
        assert inside is model
        assert all(m.training for m in dropouts)
        assert not any(m.training for m in norms)
        others = [m for m in model.modules() if not isinstance(m, nn.Dropout)]
        assert not any(m.training for m in others)

    assert _modes(model) == before


def test_mc_dropout_restores_mixed_modes_even_on_error(model: SmallCNN) -> None:
    model.train()
    model.head.eval()  # a mixed state: features training, head eval
    before = _modes(model)
    with pytest.raises(RuntimeError, match="boom"):
        with mc_dropout(model):
            raise RuntimeError("boom")
    assert _modes(model) == before
    assert model.features.training and not model.head.training


@pytest.mark.parametrize("samples", [0, 3])
def test_predict_restores_train_mode(model: SmallCNN, samples: int) -> None:
    model.train()
    before = _modes(model)
    predict_probabilities(model, _images(4), samples=samples, device=CPU, seed=0)
    assert _modes(model) == before


@pytest.mark.parametrize("start_in_train_mode", [True, False])
@pytest.mark.parametrize("samples", [0, 3])
def test_predict_leaves_batchnorm_running_stats_unchanged(
    model: SmallCNN, start_in_train_mode: bool, samples: int
) -> None:
    model.train(start_in_train_mode)
    before = _bn_state(model)
    assert before["features.1.running_mean"].abs().sum() > 0  # the fixture moved the stats
    predict_probabilities(model, _images(20, seed=3) * 5.0, samples=samples, device=CPU, seed=0)
    after = _bn_state(model)
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


def test_chunking_gives_same_deterministic_result(model: SmallCNN) -> None:
    x = _images(23)
    whole = predict_probabilities(model, x, samples=0, device=CPU, seed=0, batch_size=512)
    chunked = predict_probabilities(model, x, samples=0, device=CPU, seed=0, batch_size=5)
    assert chunked.shape == whole.shape == (1, 23, 10)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)


def test_chunked_mc_shape_and_reproducible(model: SmallCNN) -> None:
    x = _images(11)
    a = predict_probabilities(model, x, samples=2, device=CPU, seed=5, batch_size=4)
    b = predict_probabilities(model, x, samples=2, device=CPU, seed=5, batch_size=4)
    assert a.shape == (2, 11, 10)
    np.testing.assert_allclose(a.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("samples", "passes"), [(4, 4), (0, 1)])
def test_empty_input_shape(model: SmallCNN, samples: int, passes: int) -> None:
    calls: list[tuple[int, int]] = []
    probs = predict_probabilities(
        model,
        np.zeros((0, 1, 8, 8), np.float32),
        samples=samples,
        device=CPU,
        seed=0,
        on_batch=lambda done, total: calls.append((done, total)),
    )
    assert probs.shape == (passes, 0, 10)
    assert probs.dtype == np.float32
    assert calls == []


def test_on_batch_reports_increasing_counts_ending_at_n(model: SmallCNN) -> None:
    calls: list[tuple[int, int]] = []
    predict_probabilities(
        model,
        _images(10),
        samples=2,
        device=CPU,
        seed=0,
        batch_size=4,
        on_batch=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(4, 10), (8, 10), (10, 10)]
