"""A seeded training loop: same labeled set and seed → same weights (on CPU).

The network starts fresh each round (from ``spec.weights`` when the user gave a weights file).
With ``spec.freeze_backbone`` only the classifier learns: the backbone's parameters get no
gradient and its batch-norm layers stay in eval mode, so their running statistics do not move.
Augmentation (random translations, optional horizontal flips) draws from the seeded generator.

Two regularisers: ``weight_decay`` is Adam's own (coupled) L2 on every trained weight;
``l2_penalty`` adds ``l2_penalty * sum(W ** 2)`` over the model's ``regularised_weights`` (its
hidden dense layer) to the loss, as Keras' ``W_regularizer=l2(l2_penalty)`` does. Gal, Islam &
Ghahramani 2017 use the second with ``l2_penalty = c / N`` (``recipe = "gal2017"``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from activelabel.pipeline.model import (
    Model,
    ModelSpec,
    backbone_modules,
    backbone_parameters,
    regularised_weights,
)
from activelabel.pipeline.model_file import build_model_for_training
from activelabel.pipeline.training_plan import (  # noqa: F401  (the recipe's numbers, without torch)
    TrainingConfig,
    optimizer_steps,
    planned_epochs,
)


def uses_batch_norm(model: nn.Module) -> bool:
    """True when ``model`` has a batch-norm layer (it cannot train on a batch of one)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def l2_term(model: Model, l2_penalty: float) -> torch.Tensor:
    """``l2_penalty * sum(W ** 2)`` over the model's regularised weight matrices (a scalar tensor).

    Keras' ``l2(l2_penalty)`` regulariser (Gal et al. 2017's code: ``l2(c / N)`` on the hidden
    dense layer), added to the mean cross-entropy of each batch. Raises ``ValueError`` when
    ``l2_penalty > 0`` but the model has no regularised layer (a torchvision network).
    """
    weights = regularised_weights(model)
    if l2_penalty and not weights:
        raise ValueError(f"{type(model).__name__} has no hidden dense layer to put an L2 penalty on")
    if not weights:
        return torch.zeros(())
    return l2_penalty * sum(w.pow(2).sum() for w in weights)


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
    """Train a fresh model (standard in active learning: no warm-start bias from the last round).

    ``images`` ``[N, C, H, W]`` float32 in [0, 1], ``targets`` ``[N]`` int64 class indices.
    ``on_epoch(epoch, epochs, mean_loss)`` reports progress (the mean cross-entropy, without the
    L2 term). Each epoch takes ``ceil(N / batch_size)`` optimizer steps, one per shuffled batch;
    only a model with batch norm skips a last batch of one. Returns the model in eval mode.
    Raises ``ValueError`` for an empty labeled set or an ``l2_penalty`` the model cannot take, and
    ``WeightsFileError`` when ``spec.weights`` does not fit ``spec.architecture``.
    """
    if len(images) == 0:
        raise ValueError("cannot train on an empty labeled set")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_model_for_training(spec).to(device)
    frozen = backbone_parameters(model) if spec.freeze_backbone else []
    for parameter in frozen:
        parameter.requires_grad_(False)
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    x_all = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    y_all = torch.from_numpy(np.ascontiguousarray(targets)).to(device)
    n = len(x_all)
    loss_fn = nn.CrossEntropyLoss()
    if config.l2_penalty:
        l2_term(model, config.l2_penalty)  # raises before training when the model has no such layer
    batch_norm = uses_batch_norm(model)
    epochs = planned_epochs(n, config, skips_batch_of_one=batch_norm)
    _train_mode(model, frozen_backbone=spec.freeze_backbone)
    # A frozen backbone without augmentation gives the same features every epoch: compute them once.
    cached = _features(model, x_all, config.batch_size) if spec.freeze_backbone and not config.augment else None
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        total = 0.0
        for start in range(0, n, config.batch_size):
            batch = order[start : start + config.batch_size]
            if len(batch) < 2 and n >= 2 and batch_norm:
                # BatchNorm cannot normalise a batch of one; fold it into the next epoch.
                continue
            optimizer.zero_grad(set_to_none=True)
            if cached is not None:
                logits = model.classifier(cached[batch])
            else:
                x = x_all[batch]
                if config.augment:
                    x = augment_batch(x, generator, flip=config.augment_flip)
                logits = model(x)
            loss = loss_fn(logits, y_all[batch])
            objective = loss + l2_term(model, config.l2_penalty) if config.l2_penalty else loss
            objective.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        if on_epoch is not None:
            on_epoch(epoch + 1, epochs, total / n)
    for parameter in frozen:
        parameter.requires_grad_(True)
    model.eval()
    return model


def _train_mode(model: Model, *, frozen_backbone: bool) -> None:
    model.train()
    if frozen_backbone:
        for module in backbone_modules(model):
            module.eval()


@torch.no_grad()
def _features(model: Model, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([model.embed(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])


def augment_batch(x: torch.Tensor, generator: torch.Generator, *, flip: bool = False) -> torch.Tensor:
    """Shift each image ``[N, C, H, W]`` by up to 1/8 of its height/width (zero fill); maybe flip.

    Offsets (and flips, with ``flip``) are drawn from ``generator`` (a CPU generator), so a
    seeded run augments identically every time. Returns a new tensor of the same shape.
    """
    n, c, h, w = x.shape
    ph, pw = h // 8, w // 8
    out = x
    if ph or pw:
        padded = nn.functional.pad(x, (pw, pw, ph, ph))
        dy = torch.randint(0, 2 * ph + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * pw + 1, (n,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        out = padded[
            torch.arange(n, device=x.device)[:, None, None, None],
            torch.arange(c, device=x.device)[None, :, None, None],
            rows,
            cols,
        ]
    if flip:
        mirrored = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        out = torch.where(mirrored[:, None, None, None], out.flip(-1), out)
    return out
