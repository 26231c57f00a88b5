"""Stochastic prediction: T forward passes with dropout on give probabilities ``[T, N, C]``.

MC dropout (Gal & Ghahramani 2016) keeps dropout active at test time while batch norm uses its
running statistics (eval mode): only dropout is the source of randomness, and the pool never
leaks into the batch-norm statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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


def predict_stream(
    model: nn.Module,
    chunks: Iterable[torch.Tensor | np.ndarray],
    *,
    samples: int,
    device: torch.device,
    seed: int,
) -> Iterator[np.ndarray]:
    """Class probabilities ``[T, b, C]`` (float32) for each chunk of images ``[b, C, H, W]``.

    ``samples=0`` means one deterministic pass (T = 1). Chunks are consumed one at a time, so a
    pool of any size streams through with memory bounded by one chunk (the caller reduces each
    chunk to per-sample figures). Dropout masks come from one torch generator seeded with
    ``seed``: the same chunks in the same order give the same probabilities.
    """
    torch.manual_seed(seed)
    deterministic = samples == 0
    passes = 1 if deterministic else samples
    context = _restoring_modes(model) if deterministic else mc_dropout(model)
    with context, torch.no_grad():
        for chunk in chunks:
            x = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(chunk))
            x = x.to(device)
            logits = torch.stack([model(x) for _ in range(passes)])
            yield torch.softmax(logits.float(), dim=-1).cpu().numpy()


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

    The images stream through in chunks of ``batch_size`` (see :func:`predict_stream`); each
    chunk is run T times. ``on_batch(done, total)`` reports progress in samples.
    """
    n = len(images)
    starts = range(0, n, batch_size)
    chunks: list[np.ndarray] = []
    stream = predict_stream(
        model, (images[s : s + batch_size] for s in starts), samples=samples, device=device, seed=seed
    )
    for start, probs in zip(starts, stream):
        chunks.append(probs)
        if on_batch is not None:
            on_batch(min(start + batch_size, n), n)
    if not chunks:
        return np.zeros((1 if samples == 0 else samples, 0, _num_classes(model)), dtype=np.float32)
    return np.concatenate(chunks, axis=1)


def _num_classes(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return last.out_features
