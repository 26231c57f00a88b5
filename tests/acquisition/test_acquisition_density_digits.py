"""Feature density on a real (small) trained model: digits vs generated out-of-distribution inputs.

Issue #12: density must separate digits from inverted digits, uniform noise and digits rotated
90° with AUROC >= 0.9, where max-softmax does much worse. The model is a small MLP trained here
on scikit-learn's bundled 8x8 digits (no download); its 32-d penultimate layer gives the
features. Torch is used by the test only — the density code itself is numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from activelabel.acquisition.density import density_score, fit_class_gaussians, ood_threshold, is_ood
from activelabel.pipeline.metrics import auroc


@pytest.fixture(scope="module")
def trained() -> dict:
    torch.manual_seed(0)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)  # [1797, 8, 8] in [0, 1]
    y = digits.target
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    train, test = perm[:1200], perm[1200:]
    body = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 32), torch.nn.ReLU()
    )
    head = torch.nn.Linear(32, 10)
    optimizer = torch.optim.Adam([*body.parameters(), *head.parameters()], lr=1e-2)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(60):
        for batch in torch.randperm(len(train), generator=torch.Generator().manual_seed(_)).split(100):
            rows = torch.from_numpy(train)[batch]
            loss = torch.nn.functional.cross_entropy(head(body(xs[rows])), ys[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    @torch.no_grad()
    def features(a: np.ndarray) -> np.ndarray:
        return body(torch.from_numpy(a.astype(np.float32))).double().numpy()

    @torch.no_grad()
    def max_softmax(a: np.ndarray) -> np.ndarray:
        return torch.softmax(head(body(torch.from_numpy(a.astype(np.float32)))), dim=-1).max(dim=-1).values.numpy()

    ood = {
        "inverted": 1.0 - x[test],
        "uniform noise": rng.random(x[test].shape),
        "rotated 90°": np.rot90(x[test], axes=(1, 2)).copy(),
    }
    accuracy = float((head(body(xs[test])).argmax(-1).numpy() == y[test]).mean())
    return dict(x=x, y=y, train=train, test=test, features=features, max_softmax=max_softmax,
                ood=ood, accuracy=accuracy)


@pytest.mark.parametrize("kind", ["inverted", "uniform noise", "rotated 90°"])
def test_density_separates_digits_from_generated_ood(trained: dict, kind: str) -> None:
    assert trained["accuracy"] > 0.93  # the model itself works
    f, x, y = trained["features"], trained["x"], trained["y"]
    density = fit_class_gaussians(f(x[trained["train"]]), y[trained["train"]], num_classes=10)
    in_scores = density_score(density, f(x[trained["test"]]))
    out_scores = density_score(density, f(trained["ood"][kind]))
    density_auroc = auroc(in_scores, out_scores)
    softmax_auroc = auroc(1 - trained["max_softmax"](x[trained["test"]]), 1 - trained["max_softmax"](trained["ood"][kind]))
    assert density_auroc >= 0.9
    assert density_auroc > softmax_auroc  # the baseline it must beat


def test_ood_flag_from_labeled_percentile(trained: dict) -> None:
    f, x, y = trained["features"], trained["x"], trained["y"]
    train = trained["train"]
    density = fit_class_gaussians(f(x[train]), y[train], num_classes=10)
    threshold = ood_threshold(density, f(x[train]), percentile=5)
    assert is_ood(density, f(x[trained["test"]]), threshold).mean() < 0.25
    assert is_ood(density, f(trained["ood"]["uniform noise"]), threshold).mean() > 0.9
