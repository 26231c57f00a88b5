"""CPU prediction runs a channels-last copy of a conv model (2-3x faster on CPU): the numbers
are the plain model's, and the caller's model keeps its layout and weights."""

from __future__ import annotations

import numpy as np
import torch

from activelabel.pipeline.checkpoint import weights_digest
from activelabel.pipeline.model import ModelSpec
from activelabel.pipeline.model_file import build_model_for_training
from activelabel.pipeline.prediction import predict_stream


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model_for_training(ModelSpec(in_channels=1, num_classes=10)).eval()


def test_the_deterministic_pass_equals_the_plain_model_and_leaves_it_as_it_was() -> None:
    model = _model()
    digest = weights_digest(model)
    x = torch.rand(70, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = torch.softmax(model(x), dim=-1).numpy()
    chunks = [x[:32], x[32:]]
    got = np.concatenate([p[0] for p in predict_stream(model, chunks, samples=0, device=torch.device("cpu"), seed=0)])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert weights_digest(model) == digest
    assert all(p.is_contiguous() for p in model.parameters())  # not converted in place


def test_mc_passes_do_not_depend_on_the_chunking_in_channels_last() -> None:
    model = _model()
    x = np.random.default_rng(2).random((50, 1, 28, 28), dtype=np.float32)
    cpu = torch.device("cpu")
    whole = next(predict_stream(model, [x], samples=5, device=cpu, seed=7))
    parts = np.concatenate([p for p in predict_stream(model, [x[:13], x[13:]], samples=5, device=cpu, seed=7)], axis=1)
    assert whole.shape == (5, 50, 10)
    np.testing.assert_allclose(parts, whole, atol=1e-5)
    assert not np.allclose(whole[0], whole[1])  # the passes differ: dropout masks are on
