"""gal_cnn (Gal, Islam & Ghahramani 2017, Sec. 5.1), gal_cnn_keras (their code's layout) and the training loop's L2 penalty:
shapes and parameter counts by hand, the penalty's value and reach, exact optimizer steps,
MC-dropout modes against naive passes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from activelabel.errors import ConfigError
from activelabel.pipeline.checkpoint import load_model, serialize_weights
from activelabel.pipeline.model import GalCNN, ModelSpec, build_model, mc_dropout_mode, regularised_weights
from activelabel.pipeline.model_file import load_model_file, save_model_file
from activelabel.pipeline.prediction import SharedMasks, mc_strategy, predict_probabilities
from activelabel.pipeline.training import TrainingConfig, l2_term, planned_epochs, train_model

CPU = torch.device("cpu")


def _spec(channels: int = 1, classes: int = 10, side: int = 28, **extra) -> ModelSpec:
    return ModelSpec(in_channels=channels, num_classes=classes, architecture="gal_cnn", input_size=(side, side), **extra)


def _images(n: int, side: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, channels, side, side), dtype=np.float32)


@pytest.mark.parametrize("channels, classes, side, flat", [
    (1, 10, 28, 32 * 11 * 11),  # MNIST: 28 -> 25 -> 22 -> pool 11
    (1, 10, 8, 32 * 1 * 1),     # digits: 8 -> 5 -> 2 -> pool 1
    (3, 4, 32, 32 * 13 * 13),   # RGB 32: 32 -> 29 -> 26 -> pool 13
    (1, 3, 9, 32 * 1 * 1),      # odd side: 9 -> 6 -> 3 -> pool 1 (floor)
])
def test_shapes_and_parameter_count_by_hand(channels: int, classes: int, side: int, flat: int) -> None:
    model = build_model(_spec(channels, classes, side)).eval()
    assert isinstance(model, GalCNN) and model.flat_dim == flat
    x = torch.from_numpy(_images(3, side, channels))
    assert tuple(model.features(x).shape) == (3, flat)
    assert tuple(model.embed(x).shape) == (3, 128)
    assert tuple(model(x).shape) == (3, classes)
    by_hand = (
        (channels * 16 * 32 + 32)    # conv 32 of 4x4 over the input channels
        + (32 * 16 * 32 + 32)        # conv 32 of 4x4 over 32 channels
        + (flat * 128 + 128)         # dense 128
        + (128 * classes + classes)  # dense C
    )
    assert sum(p.numel() for p in model.parameters()) == by_hand
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.25, 0.5]


def test_mnist_size_has_513994_parameters_and_keras_initialisation() -> None:
    model = build_model(_spec())
    assert sum(p.numel() for p in model.parameters()) == 513_994
    dense = model.head[0]
    limit = (6 / (3872 + 128)) ** 0.5  # Glorot uniform, as Keras initialises Dense
    largest = float(dense.weight.detach().abs().max())
    assert 0.9 * limit < largest <= limit
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


@pytest.mark.parametrize("channels, classes, side, flat", [
    (1, 10, 28, 32 * 4 * 4),    # MNIST: 28 -> 26 -> 24 -> pool 5 -> 4 (the authors' Keras code)
    (1, 10, 9, 32 * 1 * 1),     # the smallest: 9 -> 7 -> 5 -> pool 1
    (3, 4, 32, 32 * 5 * 5),     # RGB 32: 32 -> 30 -> 28 -> pool 5
])
def test_the_keras_code_layout_by_hand(channels: int, classes: int, side: int, flat: int) -> None:
    """gal_cnn_keras: 3x3 kernels, a 5x5 pool, dense 256 (Dropout_Bald_Q10_N1000_Paper.py)."""
    spec = ModelSpec(in_channels=channels, num_classes=classes, architecture="gal_cnn_keras", input_size=(side, side))
    model = build_model(spec).eval()
    assert isinstance(model, GalCNN) and model.flat_dim == flat and model.feature_dim == 256
    x = torch.from_numpy(_images(3, side, channels))
    assert tuple(model.features(x).shape) == (3, flat)
    assert tuple(model.embed(x).shape) == (3, 256)
    assert tuple(model(x).shape) == (3, classes)
    by_hand = (channels * 9 * 32 + 32) + (32 * 9 * 32 + 32) + (flat * 256 + 256) + (256 * classes + classes)
    assert sum(p.numel() for p in model.parameters()) == by_hand
    assert [m.kernel_size for m in model.modules() if isinstance(m, nn.MaxPool2d)] == [5]
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.25, 0.5]
    assert mc_dropout_mode(model) == "full_network"
    assert [id(w) for w in regularised_weights(model)] == [id(model.head[0].weight)]
    stored = spec.to_dict()
    assert stored["name"] == "gal_cnn_keras" and stored["input_size"] == [side, side]
    assert ModelSpec.from_dict(stored) == spec
    with pytest.raises(ConfigError, match=r"gal_cnn_keras needs images of at least 9x9 pixels \(two 3x3"):
        ModelSpec(in_channels=1, num_classes=10, architecture="gal_cnn_keras", input_size=(8, 8))
    with pytest.raises(ConfigError, match="gal_cnn_keras needs the image size"):
        ModelSpec(in_channels=1, num_classes=10, architecture="gal_cnn_keras")


def test_spec_needs_an_image_size_of_at_least_8_and_round_trips() -> None:
    with pytest.raises(ConfigError, match="gal_cnn needs the image size"):
        ModelSpec(in_channels=1, num_classes=10, architecture="gal_cnn")
    with pytest.raises(ConfigError, match="at least 8x8"):
        _spec(side=7)
    with pytest.raises(ConfigError, match="width applies only to small_cnn"):
        _spec(width=8)
    spec = _spec(conv_dropout=0.1, dropout=0.3)
    stored = spec.to_dict()
    assert stored == {"name": "gal_cnn", "in_channels": 1, "num_classes": 10, "conv_dropout": 0.1,
                      "input_size": [28, 28], "head_dropout": 0.3}
    assert ModelSpec.from_dict(stored) == spec


def test_checkpoint_and_model_file_give_back_the_same_network(tmp_path) -> None:
    torch.manual_seed(1)
    spec = _spec(side=12, classes=3)
    model = build_model(spec).eval()
    x = torch.from_numpy(_images(4, 12))
    again = load_model(spec, serialize_weights(model), CPU)
    torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
    path = save_model_file(tmp_path / "gal.pt", model, spec, ["a", "b", "c"])
    loaded, loaded_spec, labels = load_model_file(path)
    assert loaded_spec == spec and labels == ["a", "b", "c"] and isinstance(loaded, GalCNN)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_a_gal_cnn_file_is_a_weights_file_for_a_new_gal_cnn(tmp_path) -> None:
    """The conv block and hidden dense layer load; the classifier (3 -> 5 classes) stays new."""
    from activelabel.pipeline.model_file import build_model_for_training

    torch.manual_seed(2)
    old = build_model(_spec(side=12, classes=3))
    path = save_model_file(tmp_path / "old.pt", old, _spec(side=12, classes=3), ["a", "b", "c"])
    new = build_model_for_training(_spec(side=12, classes=5, weights=str(path)))
    torch.testing.assert_close(new.features[0].weight, old.features[0].weight)
    torch.testing.assert_close(new.head[0].weight, old.head[0].weight)
    assert new.head[3].weight.shape == (5, 128)


def test_the_l2_term_is_lambda_times_the_squared_hidden_dense_weights_only() -> None:
    torch.manual_seed(3)
    model = build_model(_spec(side=8, classes=4))
    with torch.no_grad():  # biases and other layers non-zero, so leaving them out is visible
        for p in model.parameters():
            p.add_(0.1)
    lam = 3.5 / 20
    expected = lam * float((model.head[0].weight.detach().double() ** 2).sum())
    assert float(l2_term(model, lam).detach()) == pytest.approx(expected, rel=1e-6)
    assert [id(w) for w in regularised_weights(model)] == [id(model.head[0].weight)]
    everything = lam * sum(float((p.detach().double() ** 2).sum()) for p in model.parameters())
    assert everything > 1.5 * expected  # so the equality above excludes the others
    # The gradient of the term: 2 * lambda * W on the dense weights, nothing anywhere else.
    model.zero_grad()
    l2_term(model, lam).backward()
    torch.testing.assert_close(model.head[0].weight.grad, 2 * lam * model.head[0].weight.detach())
    others = [p for n, p in model.named_parameters() if n != "head.0.weight"]
    assert all(p.grad is None or float(p.grad.abs().max()) == 0.0 for p in others)


def test_the_l2_penalty_needs_a_hidden_dense_layer() -> None:
    r18 = build_model(ModelSpec(in_channels=1, num_classes=3, architecture="resnet18"))
    assert regularised_weights(r18) == []
    with pytest.raises(ValueError, match="no hidden dense layer"):
        train_model(_images(4, 32), np.arange(4) % 3, ModelSpec(in_channels=1, num_classes=3, architecture="resnet18"),
                    TrainingConfig(epochs=1, l2_penalty=0.1), seed=0, device=CPU)


def test_training_with_the_penalty_shrinks_the_regularised_layer() -> None:
    x, y = _images(20, 8), np.arange(20) % 4
    spec = _spec(side=8, classes=4)
    plain = train_model(x, y, spec, TrainingConfig(epochs=60, batch_size=128, weight_decay=0.0, min_steps=0),
                        seed=5, device=CPU)
    shrunk = train_model(x, y, spec, TrainingConfig(epochs=60, batch_size=128, weight_decay=0.0, min_steps=0,
                                                    l2_penalty=1.0), seed=5, device=CPU)
    norm = lambda m, name: float(dict(m.named_parameters())[name].detach().norm())  # noqa: E731
    assert norm(shrunk, "head.0.weight") < 0.85 * norm(plain, "head.0.weight")


class _StepCounter:
    def __init__(self) -> None:
        self.steps = 0

    def __call__(self, optimizer, args, kwargs) -> None:
        self.steps += 1


@pytest.mark.parametrize("n, expected_gal, expected_small", [
    (300, 3 * 3, 3 * 3),  # ceil(300 / 128) = 3 batches per epoch, 3 epochs
    (257, 3 * 3, 3 * 2),  # last batch of one: gal_cnn (no batch norm) steps on it, small_cnn skips it
    (20, 3 * 1, 3 * 1),
])
def test_fixed_epochs_take_exactly_epochs_times_batches_steps(n: int, expected_gal: int, expected_small: int) -> None:
    from torch.optim.optimizer import register_optimizer_step_post_hook

    config = TrainingConfig(epochs=3, batch_size=128, weight_decay=0.0, min_steps=0, l2_penalty=0.01)
    assert planned_epochs(n, config, skips_batch_of_one=n % 128 == 1) == 3
    x, y = _images(n, 8), np.arange(n) % 10
    for spec, expected in ((_spec(side=8), expected_gal), (ModelSpec(in_channels=1, num_classes=10, width=4),
                                                           expected_small)):
        counter = _StepCounter()
        handle = register_optimizer_step_post_hook(counter)
        try:
            train_model(x, y, spec, config, seed=0, device=CPU)
        finally:
            handle.remove()
        assert counter.steps == expected, spec.architecture


def test_mc_dropout_mode_follows_the_dropout_layout_and_fast_modes_equal_naive_passes() -> None:
    torch.manual_seed(6)
    full = build_model(_spec(side=12, classes=5)).eval()
    head = build_model(_spec(side=12, classes=5, conv_dropout=0.0)).eval()
    assert mc_dropout_mode(full) == "full_network" and mc_strategy(full, 4) == "full_network"
    assert mc_dropout_mode(head) == "head_only" and mc_strategy(head, 4) == "head_only"
    x = _images(9, 12)
    for net in (full, head):
        naive = predict_probabilities(net, x, samples=4, device=CPU, seed=8, mode="naive")
        fast = predict_probabilities(net, x, samples=4, device=CPU, seed=8)
        np.testing.assert_allclose(fast, naive, rtol=0, atol=1e-5)
        assert not np.allclose(naive[0], naive[1])


def test_naive_pass_is_gal_cnn_with_the_shared_masks_written_out() -> None:
    """Pass t: the conv block's output times mask (seed, t, 0), the hidden layer's times mask 1."""
    torch.manual_seed(7)
    model = build_model(_spec(side=12, classes=5)).eval()
    x = torch.from_numpy(_images(6, 12))
    probs = predict_probabilities(model, x.numpy(), samples=3, device=CPU, seed=11, mode="full_network")
    masks = SharedMasks(model, 11)
    with torch.no_grad():
        for t in range(3):
            h = model.features[:5](model.normalize(x))  # conv, relu, conv, relu, max-pool
            h = h * masks.mask(0, t, tuple(h.shape[1:]), CPU)
            h = model.head[:2](model.features[6:](h))  # flatten, dense 128, relu
            h = h * masks.mask(1, t, tuple(h.shape[1:]), CPU)
            expected = torch.softmax(model.head[3](h), dim=-1).numpy()
            np.testing.assert_allclose(probs[t], expected, rtol=0, atol=1e-5)
