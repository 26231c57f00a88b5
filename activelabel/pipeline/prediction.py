"""Stochastic prediction: T forward passes with dropout on give probabilities ``[T, N, C]``.

MC dropout (Gal & Ghahramani 2016) keeps dropout active at test time while batch norm uses its
running statistics (eval mode): only dropout is the source of randomness, and the pool never
leaks into the batch-norm statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


@contextmanager
def _restoring_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Put the model in eval mode for the block; every module gets its own mode back after."""
    previous = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, mode in previous.items():
            module.train(mode)


@contextmanager
def mc_dropout(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode everywhere except dropout layers; restores the previous modes on exit."""
    with _restoring_modes(model):
        for module in model.modules():
            if isinstance(module, _DROPOUT_TYPES):
                module.train()
        yield model


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    images: np.ndarray,
    *,
    samples: int,
    device: torch.device,
    seed: int,
    batch_size: int = 512,
    on_batch: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Class probabilities ``[T, N, C]`` (float32); ``samples=0`` means one deterministic pass.

    The pool streams through in chunks of ``batch_size`` so memory stays bounded; each chunk
    is run T times. ``on_batch(done, total)`` reports progress in samples.
    """
    torch.manual_seed(seed)
    deterministic = samples == 0
    passes = 1 if deterministic else samples
    n = len(images)
    chunks: list[np.ndarray] = []
    context = _restoring_modes(model) if deterministic else mc_dropout(model)
    with context:
        for start in range(0, n, batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device)
            logits = torch.stack([model(x) for _ in range(passes)])
            chunks.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
            if on_batch is not None:
                on_batch(min(start + batch_size, n), n)
    if not chunks:
        num_classes = _num_classes(model)
        return np.zeros((passes, 0, num_classes), dtype=np.float32)
    return np.concatenate(chunks, axis=1)


def _num_classes(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return last.out_features
