"""Reading a campaign's pixels for a step: unreadable files are reported, never fatal.

Both functions return the problems they met as ``(uri, reason)`` pairs; the step stores them
(``sample_problem``) in the same transaction as its output, so an unreadable file is recorded
once, skipped by training and metrics, and never selected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from activelabel.pipeline.decode import UnreadableImageError
from activelabel.pipeline.prediction import predict_stream


def read_readable(store, uris: Sequence[str]) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    """Images ``[n, C, H, W]`` of the readable URIs, their positions in ``uris``, and problems."""
    try:
        return store.read(list(uris)), list(range(len(uris))), []
    except UnreadableImageError:
        pass
    images, kept, problems = [], [], []
    for i, uri in enumerate(uris):
        try:
            images.append(store.read([uri])[0])
            kept.append(i)
        except UnreadableImageError as error:
            problems.append((uri, error.reason))
    stacked = np.stack(images) if images else np.zeros((0, 1, 1, 1), dtype=np.float32)
    return stacked, kept, problems


def stream_probabilities(
    model: nn.Module,
    store,
    uris: Sequence[str],
    *,
    samples: int,
    device: torch.device,
    seed: int,
    workers: int = 0,
    batch_size: int = 256,
    problems: list[tuple[str, str]],
    on_batch: Callable[[int], None] | None = None,
    temperature: float = 1.0,
    logits: bool = False,
    features: bool = False,
) -> Iterator[tuple[np.ndarray, ...]]:
    """(positions into ``uris``, probabilities ``[T, b, C]``) chunk by chunk; with
    ``features=True`` (positions, probabilities, penultimate features ``[b, D]``).

    Pixels are decoded by the store's DataLoader (``workers`` processes); nothing proportional
    to the pool is held. Unreadable files are appended to ``problems`` and skipped.
    ``temperature``, ``logits`` and ``features`` are those of :func:`predict_stream` (masks are shared by the
    whole pool, so a sample's probabilities do not depend on the batch it was decoded in).
    """
    batches = store.batches(list(uris), batch_size=batch_size, workers=workers)
    positions: list[np.ndarray] = []

    def images() -> Iterator[torch.Tensor]:
        done = 0
        for batch in batches:
            problems.extend((uris[int(p)], reason) for p, reason in batch.failures)
            done += len(batch.positions) + len(batch.failures)
            if on_batch is not None:
                on_batch(done)
            if len(batch.positions):
                positions.append(np.asarray(batch.positions))
                yield batch.images

    for out in predict_stream(model, images(), samples=samples, device=device, seed=seed,
                              temperature=temperature, logits=logits, features=features):
        yield (positions.pop(0), *out) if features else (positions.pop(0), out)
