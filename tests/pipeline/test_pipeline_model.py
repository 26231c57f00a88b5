"""Networks by name: the spec's stored forms, the backbone/classifier split, normalisation, MC modes."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

from activelabel.errors import ConfigError
from activelabel.pipeline.checkpoint import load_model
from activelabel.pipeline.model import (
    ARCHITECTURES,
    ModelSpec,
    backbone_parameters,
    build_model,
    classifier_parameters,
    mc_dropout_mode,
)
from activelabel.pipeline.prediction import mc_dropout, predict_probabilities

torch.set_num_threads(1)
CPU = torch.device("cpu")
GAL = ("gal_cnn", "gal_cnn_keras")
FEATURE_DIM = {"small_cnn": 128, "gal_cnn": 128, "gal_cnn_keras": 256, "resnet18": 512, "mobilenet_v3_small": 576, "efficientnet_b0": 1280}

# The stored form every earlier version wrote, and the state keys of its small CNN.
OLD_DICT = {"name": "small_cnn", "in_channels": 1, "num_classes": 10, "width": 8, "conv_dropout": 0.25, "head_dropout": 0.5}
OLD_KEYS = {
    *(f"features.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")),
    *(f"features.{i}.{p}" for i in (1, 4) for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
    *(f"head.{i}.{p}" for i in (0, 3) for p in ("weight", "bias")),
}


def test_old_stored_form_reads_and_default_spec_writes_it_back() -> None:
    spec = ModelSpec.from_dict(OLD_DICT)
    assert spec == ModelSpec(in_channels=1, num_classes=10, width=8)
    assert (spec.architecture, spec.dropout, spec.weights, spec.freeze_backbone, spec.mean) == (
        "small_cnn", 0.5, None, False, None
    )
    assert spec.to_dict() == OLD_DICT


def test_full_spec_round_trips_through_json() -> None:
    spec = ModelSpec(
        in_channels=3, num_classes=4, architecture="resnet18", dropout=0.3, weights="/tmp/r18.pt",
        freeze_backbone=True, mean=[0.5, 0.4, 0.3], std=(0.2, 0.2, 0.25),
    )
    assert spec.mean == (0.5, 0.4, 0.3)  # lists become tuples: the spec stays hashable
    data = json.loads(json.dumps(spec.to_dict()))
    assert data == {
        "name": "resnet18", "in_channels": 3, "num_classes": 4, "head_dropout": 0.3,
        "weights": "/tmp/r18.pt", "freeze_backbone": True, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.25],
    }
    assert ModelSpec.from_dict(data) == spec
    # The field names are accepted too.
    assert ModelSpec.from_dict({"architecture": "resnet18", "in_channels": 3, "num_classes": 4}).architecture == "resnet18"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"architecture": "vgg16"}, "unknown model architecture 'vgg16'; choose one of: small_cnn, gal_cnn, gal_cnn_keras, resnet18, mobilenet_v3_small, efficientnet_b0"),
        ({"mean": (0.5, 0.5), "std": (0.2, 0.2)}, "mean has 2 value"),
        ({"mean": (0.5,)}, "both mean and std"),
        ({"mean": (0.5,), "std": (0.0,)}, "std must be positive"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"architecture": "resnet18", "width": 32}, "only to small_cnn"),
    ],
)
def test_invalid_specs_raise_config_error(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ModelSpec(in_channels=1, num_classes=3, **kwargs)


def test_unknown_stored_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown model setting 'depth'"):
        ModelSpec.from_dict({**OLD_DICT, "depth": 3})


def test_old_small_cnn_state_dict_still_loads() -> None:
    spec = ModelSpec.from_dict(OLD_DICT)
    net = build_model(spec)
    assert set(net.state_dict()) == OLD_KEYS  # no key added: normalisation buffers are not persistent
    torch.manual_seed(5)
    old_state = {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(old_state, buffer)
    restored = load_model(spec, buffer.getvalue(), CPU)
    for key, value in restored.state_dict().items():
        assert torch.equal(value, old_state[key]), key


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_architecture_on_tiny_images(architecture: str, channels: int) -> None:
    def build(size: int):
        torch.manual_seed(0)
        spec = ModelSpec(in_channels=channels, num_classes=5, architecture=architecture,
                         mean=(0.5,) * channels, std=(0.25,) * channels,
                         input_size=(size, size) if architecture in GAL else None)
        return build_model(spec).eval()

    smallest = 9 if architecture == "gal_cnn_keras" else 8  # two 3x3 convolutions and a 5x5 pool
    net = build(smallest)
    assert net.feature_dim == FEATURE_DIM[architecture]
    head = list(net.classifier.modules())
    assert isinstance(head[-1], torch.nn.Linear) and head[-1].out_features == 5
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in head)
    # Backbone and classifier split the parameters between them, nothing shared or lost.
    ids = [id(p) for p in backbone_parameters(net)] + [id(p) for p in classifier_parameters(net)]
    assert sorted(ids) == sorted(id(p) for p in net.parameters())
    for size in (smallest, 28, 32):
        if architecture in GAL:  # their dense layer is sized for one input size
            net = build(size)
        x = torch.rand(2, channels, size, size)
        with torch.no_grad():
            out = net(x)
            features = net.backbone(net.normalize(x))
            assert out.shape == (2, 5)
            assert features.shape == (2, FEATURE_DIM[architecture])
            torch.testing.assert_close(net.embed(x), features)
            torch.testing.assert_close(net.classifier(features), out)
    # The torchvision backbones hold no dropout: MC dropout can resample the head alone.
    expected = "full_network" if architecture in ("small_cnn", *GAL) else "head_only"
    assert mc_dropout_mode(net) == expected


def test_small_cnn_without_conv_dropout_is_head_only() -> None:
    assert mc_dropout_mode(build_model(ModelSpec(in_channels=1, num_classes=3, conv_dropout=0.0))) == "head_only"


def test_normalisation_is_the_first_layer() -> None:
    torch.manual_seed(1)
    mean, std = (0.2, 0.4, 0.6), (0.5, 0.25, 0.1)
    plain = build_model(ModelSpec(in_channels=3, num_classes=4)).eval()
    normed = build_model(ModelSpec(in_channels=3, num_classes=4, mean=mean, std=std)).eval()
    normed.load_state_dict(plain.state_dict())
    x = torch.rand(3, 3, 16, 16)
    expected = plain((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    with torch.no_grad():
        torch.testing.assert_close(normed(x), expected.detach())
        assert not torch.allclose(normed(x), plain(x))


def test_build_model_never_reads_the_weights_file() -> None:
    spec = ModelSpec(in_channels=1, num_classes=3, architecture="resnet18", weights="/nonexistent/r18.pt")
    assert build_model(spec).feature_dim == 512


def test_mc_dropout_on_a_torchvision_model_samples_only_the_head() -> None:
    torch.manual_seed(2)
    net = build_model(ModelSpec(in_channels=1, num_classes=6, architecture="resnet18"))
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    probs = predict_probabilities(net, x, samples=4, device=CPU, seed=3)
    assert probs.shape == (4, 5, 6) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-5)
    assert not np.allclose(probs[0], probs[1])  # the head dropout is live
    # The backbone is deterministic while sampling: same features on every pass.
    with mc_dropout(net), torch.no_grad():
        a, b = net.embed(torch.from_numpy(x)), net.embed(torch.from_numpy(x))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
