"""Exported model files and user weights files: round trips, torchvision files, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from activelabel.errors import WeightsFileError
from activelabel.pipeline.checkpoint import weights_digest
from activelabel.pipeline.model import ModelSpec, build_model
from activelabel.pipeline.model_file import (
    FORMAT,
    build_model_for_training,
    load_backbone_weights,
    load_model_file,
    save_model_file,
)
from activelabel.pipeline.prediction import predict_probabilities

torch.set_num_threads(1)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A torchvision resnet18 state_dict with ImageNet's 1000-class head, as a user would save it."""
    torch.manual_seed(11)
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet18_imagenet.pth"
    torch.save(state, path)
    return path, state


def _trained_like(spec: ModelSpec, seed: int) -> torch.nn.Module:
    """A model with non-default batch-norm statistics, so eval outputs depend on the input."""
    torch.manual_seed(seed)
    model = build_model(spec).train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(8, spec.in_channels, 32, 32))
    return model.eval()


@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec(in_channels=1, num_classes=3, width=4),
        ModelSpec(in_channels=3, num_classes=3, architecture="resnet18", dropout=0.2,
                  mean=(0.5, 0.5, 0.5), std=(0.2, 0.3, 0.4)),
    ],
    ids=["small_cnn", "resnet18"],
)
def test_model_file_round_trip(tmp_path: Path, spec: ModelSpec) -> None:
    model = _trained_like(spec, seed=0)
    path = save_model_file(tmp_path / "model.pt", model, spec, ["cat", "dog", "owl"], extra={"round": 4})
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left behind

    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT == "activelabel-model/1"
    assert raw["architecture"] == spec.to_dict() and raw["labels"] == ["cat", "dog", "owl"]
    assert raw["extra"] == {"round": 4}

    restored, restored_spec, labels = load_model_file(path)
    assert restored_spec == spec and labels == ["cat", "dog", "owl"]
    assert weights_digest(restored) == weights_digest(model)
    assert not any(m.training for m in restored.modules())
    x = np.random.default_rng(1).random((6, spec.in_channels, 32, 32), dtype=np.float32)
    for samples in (0, 3):
        np.testing.assert_array_equal(
            predict_probabilities(model, x, samples=samples, device=CPU, seed=2),
            predict_probabilities(restored, x, samples=samples, device=CPU, seed=2),
        )


def test_model_file_loads_into_plain_torchvision_as_documented(tmp_path: Path) -> None:
    spec = ModelSpec(in_channels=1, num_classes=4, architecture="resnet18", mean=(0.5,), std=(0.25,))
    model = _trained_like(spec, seed=3)
    path = save_model_file(tmp_path / "model.pt", model, spec, list("abcd"))

    # The snippet of activelabel.pipeline.model_file's docstring, line for line.
    f = torch.load(path, weights_only=True)
    arch, sd = f["architecture"], f["state_dict"]
    net = torchvision.models.resnet18(weights=None)
    net.conv1 = torch.nn.Conv2d(arch["in_channels"], 64, 7, 2, 3, bias=False)
    net.fc = torch.nn.Sequential(torch.nn.Dropout(arch["head_dropout"]), torch.nn.Linear(512, arch["num_classes"]))
    state = {k.removeprefix("body."): v for k, v in sd.items() if k.startswith("body.")}
    state |= {"fc." + k.removeprefix("classifier."): v for k, v in sd.items() if k.startswith("classifier.")}
    net.load_state_dict(state)
    net.eval()

    x = torch.rand(5, 1, 32, 32)
    mean, std = torch.tensor(arch["mean"]).view(1, -1, 1, 1), torch.tensor(arch["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(net((x - mean) / std), model(x))


def test_save_rejects_a_label_count_that_differs(tmp_path: Path) -> None:
    spec = ModelSpec(in_channels=1, num_classes=3, width=4)
    with pytest.raises(ValueError, match="2 labels for a model with 3 classes"):
        save_model_file(tmp_path / "m.pt", build_model(spec), spec, ["a", "b"])
    assert list(tmp_path.iterdir()) == []


def test_load_model_file_rejects_a_plain_state_dict(tmp_path: Path, resnet18_file) -> None:
    path, _ = resnet18_file
    with pytest.raises(WeightsFileError, match="is not an activelabel model file"):
        load_model_file(path)


def test_torchvision_file_loads_into_the_backbone_and_skips_the_head(resnet18_file) -> None:
    path, state = resnet18_file
    spec = ModelSpec(in_channels=3, num_classes=4, architecture="resnet18", weights=str(path))
    torch.manual_seed(0)
    model = build_model(spec)
    head_before = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    report = load_backbone_weights(model, spec)

    assert set(report.skipped) == {"fc.weight", "fc.bias"} and not report.summed_first_conv
    loaded = model.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[f"body.{key}"], value), key
    assert report.loaded == len(state) - 2
    for key, value in model.classifier.state_dict().items():
        assert torch.equal(value, head_before[key])


def test_three_channel_first_conv_is_summed_into_a_grey_model(resnet18_file) -> None:
    path, state = resnet18_file
    spec = ModelSpec(in_channels=1, num_classes=2, architecture="resnet18", weights=str(path))
    model = build_model_for_training(spec)
    conv = model.state_dict()["body.conv1.weight"]
    assert conv.shape == (64, 1, 7, 7)
    torch.testing.assert_close(conv, state["conv1.weight"].sum(dim=1, keepdim=True))
    # A grey image seen as RGB gives the same first-layer response in both networks.
    grey = torch.rand(1, 1, 16, 16)
    rgb_conv = torch.nn.functional.conv2d(grey.expand(1, 3, 16, 16), state["conv1.weight"], stride=2, padding=3)
    torch.testing.assert_close(torch.nn.functional.conv2d(grey, conv, stride=2, padding=3), rgb_conv)


def _one_line_error(spec: ModelSpec) -> str:
    torch.manual_seed(0)
    model = build_model(spec)
    before = weights_digest(model)
    with pytest.raises(WeightsFileError) as caught:
        load_backbone_weights(model, spec)
    assert weights_digest(model) == before  # nothing loaded
    message = str(caught.value)
    assert "\n" not in message and str(Path(spec.weights).expanduser()) in message
    return message


def test_a_mobilenet_file_is_not_a_resnet18(tmp_path: Path) -> None:
    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), path)
    message = _one_line_error(ModelSpec(in_channels=3, num_classes=4, architecture="resnet18", weights=str(path)))
    assert "for resnet18 (3 channel(s))" in message
    # Keys as the file names them; num_batches_tracked (absent from old files) is never required.
    assert "100 missing key(s) (bn1.bias, bn1.running_mean, bn1.running_var, …)" in message
    assert "244 unexpected key(s) (classifier.0.bias, classifier.0.weight, classifier.3.bias, …)" in message
    assert "it looks like a mobilenet_v3_small state_dict: set the architecture to mobilenet_v3_small" in message
    assert "give a resnet18 state_dict" in message


def test_an_activelabel_file_of_another_architecture_is_named(tmp_path: Path) -> None:
    other = ModelSpec(in_channels=1, num_classes=2, architecture="mobilenet_v3_small")
    path = save_model_file(tmp_path / "m.pt", build_model(other), other, ["a", "b"])
    message = _one_line_error(ModelSpec(in_channels=1, num_classes=3, architecture="resnet18", weights=str(path)))
    assert "it is an activelabel mobilenet_v3_small model, not resnet18" in message


def test_an_activelabel_file_of_the_same_architecture_gives_its_backbone(tmp_path: Path) -> None:
    source_spec = ModelSpec(in_channels=1, num_classes=5, width=4)
    source = _trained_like(source_spec, seed=7)
    path = save_model_file(tmp_path / "m.pt", source, source_spec, list("abcde"))
    spec = ModelSpec(in_channels=1, num_classes=3, width=4, weights=str(path))
    model = build_model_for_training(spec)
    theirs, ours = source.state_dict(), model.state_dict()
    for key in ours:
        if key.startswith("head.3."):  # the new 3-class output layer
            assert ours[key].shape != theirs[key].shape
        else:
            assert torch.equal(ours[key], theirs[key]), key


def test_shape_mismatch_is_reported_with_both_shapes(tmp_path: Path) -> None:
    narrow = ModelSpec(in_channels=1, num_classes=3, width=4)
    path = tmp_path / "narrow.pt"
    torch.save(build_model(narrow).state_dict(), path)
    message = _one_line_error(ModelSpec(in_channels=1, num_classes=3, width=8, weights=str(path)))
    assert "shape mismatch(es), file vs model (features.0.bias [4] vs [8]" in message


def test_a_missing_key_is_named(tmp_path: Path, resnet18_file) -> None:
    _, state = resnet18_file
    path = tmp_path / "cut.pth"
    torch.save({k: v for k, v in state.items() if k != "layer4.1.conv2.weight"}, path)
    message = _one_line_error(ModelSpec(in_channels=3, num_classes=2, architecture="resnet18", weights=str(path)))
    assert "1 missing key(s) (layer4.1.conv2.weight)" in message


@pytest.mark.parametrize("kind", ["missing", "garbage", "pickled_module", "not_a_state_dict"])
def test_unusable_files(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.pt"
    if kind == "garbage":
        path.write_bytes(b"these are not weights")
    elif kind == "pickled_module":
        torch.save(build_model(ModelSpec(in_channels=1, num_classes=2, width=4)), path)
    elif kind == "not_a_state_dict":
        torch.save([1, 2, 3], path)
    message = _one_line_error(ModelSpec(in_channels=1, num_classes=2, width=4, weights=str(path)))
    expected = {
        "missing": "not found",
        "garbage": "cannot be read as plain tensors",
        "pickled_module": "cannot be read as plain tensors",
        "not_a_state_dict": "holds no state_dict of tensors",
    }[kind]
    assert expected in message and "torch.save" in message


def test_ensemble_file_round_trip_and_its_calibrated_prediction(tmp_path: Path) -> None:
    from activelabel.pipeline.calibration import calibrated_probabilities
    from activelabel.pipeline.model_file import ENSEMBLE_FORMAT, load_ensemble_file, save_ensemble_file

    spec = ModelSpec(in_channels=1, num_classes=3, width=4)
    members = [_trained_like(spec, seed=s) for s in (0, 1, 2)]
    calibration = {"temperature": 1.7, "mixture_temperature": 0.6, "predictor": {"method": "ensemble"}}
    path = save_ensemble_file(tmp_path / "ens.pt", members, spec, ["a", "b", "c"], calibration=calibration,
                              extra={"round": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["ens.pt"]
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == ENSEMBLE_FORMAT == "activelabel-model/2" and "state_dict" not in raw
    assert raw["calibration"] == calibration and raw["extra"] == {"round": 2}

    loaded = load_ensemble_file(path)
    assert [weights_digest(m) for m in loaded.members] == [weights_digest(m) for m in members]
    assert (loaded.temperature, loaded.mixture_temperature, loaded.labels) == (1.7, 0.6, ["a", "b", "c"])
    x = torch.rand(5, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        logits = torch.stack([m(x) for m in members]).numpy()
    np.testing.assert_allclose(loaded.predict(x).numpy(), calibrated_probabilities(logits, 1.7, 0.6),
                               rtol=1e-5, atol=1e-6)

    with pytest.raises(WeightsFileError, match="holds an ensemble of 3 members .*load_ensemble_file"):
        load_model_file(path)
    with pytest.raises(WeightsFileError, match="ensemble of 3 members .*starts from one network"):
        build_model_for_training(ModelSpec(in_channels=1, num_classes=3, width=4, weights=str(path)))
    with pytest.raises(ValueError, match="at least 2 members"):
        save_ensemble_file(tmp_path / "one.pt", members[:1], spec, ["a", "b", "c"])


def test_load_ensemble_file_names_the_member_that_does_not_fit(tmp_path: Path) -> None:
    from activelabel.pipeline.model_file import load_ensemble_file, save_ensemble_file

    spec = ModelSpec(in_channels=1, num_classes=3, width=4)
    path = save_ensemble_file(tmp_path / "ens.pt", [build_model(spec), build_model(spec)], spec, list("abc"))
    raw = torch.load(path, weights_only=True)
    assert raw["calibration"] is None and load_ensemble_file(path).temperature == 1.0
    raw["members"][1].pop("head.3.bias")
    torch.save(raw, path)
    with pytest.raises(WeightsFileError, match=r"ens.pt member 1: weights do not fit .*head\.3\.bias"):
        load_ensemble_file(path)
