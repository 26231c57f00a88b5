"""A seeded training loop: same labeled set and seed → same weights (on CPU)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from activelabel.pipeline.model import ModelSpec, build_model


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    # Small labeled sets give few steps per epoch; train at least this many steps.
    min_steps: int = 200


def planned_epochs(n_samples: int, config: TrainingConfig) -> int:
    """Epochs the loop will run: ``config.epochs``, or more so that ``min_steps`` are taken."""
    steps_per_epoch = max(1, -(-n_samples // config.batch_size))
    return max(config.epochs, -(-config.min_steps // steps_per_epoch))


def train_model(
    images: np.ndarray,
    targets: np.ndarray,
    spec: ModelSpec,
    config: TrainingConfig,
    *,
    seed: int,
    device: torch.device,
    on_epoch: Callable[[int, int, float], None] | None = None,
) -> nn.Module:
    """Train a fresh model from scratch (standard in active learning: no warm-start bias).

    ``on_epoch(epoch, epochs, mean_loss)`` reports progress.
    """
    if len(images) == 0:
        raise ValueError("cannot train on an empty labeled set")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_model(spec).to(device)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    x_all = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    y_all = torch.from_numpy(np.ascontiguousarray(targets)).to(device)
    n = len(x_all)
    epochs = planned_epochs(n, config)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        total = 0.0
        for start in range(0, n, config.batch_size):
            batch = order[start : start + config.batch_size]
            if len(batch) < 2 and n >= 2:
                # BatchNorm cannot normalise a batch of one; fold it into the next epoch.
                continue
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_all[batch]), y_all[batch])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        if on_epoch is not None:
            on_epoch(epoch + 1, epochs, total / n)
    model.eval()
    return model
