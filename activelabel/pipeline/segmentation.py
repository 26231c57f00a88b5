"""Segmentation training and MC-dropout prediction, chunk by chunk.

- :func:`train_segmentation`: a seeded loop with per-pixel cross-entropy that skips
  ``ignore_index`` pixels (same labeled set and seed give the same weights on CPU).
- :func:`predict_segmentation_stream`: probabilities ``[T, b, C, H, W]`` per chunk of images,
  through :func:`activelabel.pipeline.prediction.predict_stream`: the same per-pass dropout
  masks shared by every image, so an image's probabilities do not depend on the chunking.
- :func:`segmentation_scores`: the pool's image scores from per-pixel maps, one chunk at a
  time: never the pool's ``[T, N, C, H, W]`` (memory ~ ``T x chunk x C x H x W`` floats).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from activelabel.acquisition.pixelwise import PixelMaps, aggregate, pixel_maps
from activelabel.pipeline.prediction import predict_stream
from activelabel.pipeline.segmentation_metrics import SegmentationEvaluation, SegmentationMeter
from activelabel.pipeline.segmentation_model import (
    SegmentationNet,
    SegmentationSpec,
    build_segmentation_model,
    load_segmentation_weights,
)
from activelabel.pipeline.training import TrainingConfig, planned_epochs


def train_segmentation(
    images: np.ndarray,
    masks: np.ndarray,
    spec: SegmentationSpec,
    config: TrainingConfig,
    *,
    seed: int,
    device: torch.device,
    ignore_index: int = 255,
    on_epoch: Callable[[int, int, float], None] | None = None,
) -> SegmentationNet:
    """Train a fresh network on ``images`` ``[N, C, H, W]`` float32 in [0, 1] and ``masks``
    ``[N, H, W]`` int64 (class indices or ``ignore_index``).

    Loss: per-pixel cross-entropy averaged over the non-ignored pixels of the batch
    (``nn.CrossEntropyLoss(ignore_index=...)``). With ``config.augment`` each image and its mask
    are flipped left-right and up-down together at random (seeded). ``spec.weights`` is
    loaded first when given. ``on_epoch(epoch, epochs, mean_loss)`` reports progress. Returns
    the model in eval mode. Raises ``ValueError`` for an empty set, mismatched shapes or a
    mask value that is neither a class nor ``ignore_index``.
    """
    if len(images) == 0:
        raise ValueError("cannot train on an empty labeled set")
    if masks.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"masks {masks.shape} do not match images {images.shape}: need [N, H, W]")
    valid = masks[masks != ignore_index]
    if valid.size and (valid.min() < 0 or valid.max() >= spec.num_classes):
        raise ValueError(
            f"masks hold values outside 0..{spec.num_classes - 1} and ignore_index {ignore_index}"
        )
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = build_segmentation_model(spec)
    if spec.weights is not None:
        load_segmentation_weights(model, spec.weights)
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    x_all = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(device)
    y_all = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.int64)).to(device)
    n = len(x_all)
    epochs = planned_epochs(n, config, skips_batch_of_one=True)  # the loop below skips one
    loss_fn = nn.CrossEntropyLoss(ignore_index=ignore_index)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        total, counted = 0.0, 0
        for start in range(0, n, config.batch_size):
            batch = order[start : start + config.batch_size]
            if len(batch) < 2 and n >= 2:
                continue  # BatchNorm cannot normalise a batch of one
            x, y = x_all[batch], y_all[batch]
            if config.augment:
                x, y = flip_pairs(x, y, generator)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            if not torch.isfinite(loss):  # every pixel of the batch ignored: nothing to learn
                continue
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
            counted += len(batch)
        if on_epoch is not None:
            on_epoch(epoch + 1, epochs, total / max(counted, 1))
    model.eval()
    return model


def flip_pairs(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each image ``[N, C, H, W]`` and its mask ``[N, H, W]`` together (left-right and
    up-down, each with probability 1/2, drawn from the CPU ``generator``)."""
    n = x.shape[0]
    lr = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    ud = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    x = torch.where(lr[:, None, None, None], x.flip(-1), x)
    y = torch.where(lr[:, None, None], y.flip(-1), y)
    x = torch.where(ud[:, None, None, None], x.flip(-2), x)
    y = torch.where(ud[:, None, None], y.flip(-2), y)
    return x, y


def predict_segmentation_stream(
    model: SegmentationNet | list[SegmentationNet],
    chunks: Iterable[torch.Tensor | np.ndarray],
    *,
    samples: int,
    device: torch.device,
    seed: int,
    temperature: float = 1.0,
) -> Iterator[np.ndarray]:
    """Per-pixel class probabilities ``[T, b, C, H, W]`` (float32) for each chunk ``[b, C, H, W]``.

    ``samples`` MC-dropout passes (0: one deterministic pass, T = 1). The trunk runs once per
    chunk and the head on the T copies, each pass with its own dropout mask shared by every
    image (seeded by ``seed``); ``temperature`` divides the logits before the per-pixel softmax.
    A list of M models (a deep ensemble) gives ``[M * T, b, C, H, W]``, member-major, member m's
    masks seeded with (``seed``, pass, layer, m) (``predict_stream``).
    """
    stream = predict_stream(model, chunks, samples=samples, device=device, seed=seed, temperature=temperature, logits=True)
    for logits in stream:
        yield torch.softmax(torch.from_numpy(logits), dim=2).numpy()


@dataclass(frozen=True)
class SegmentationScores:
    """Image scores ``[N]`` (float64) and the maps of the images asked to keep (index -> maps)."""

    scores: np.ndarray
    kept: dict[int, PixelMaps]


def segmentation_scores(
    model: SegmentationNet,
    images: np.ndarray,
    *,
    samples: int,
    device: torch.device,
    seed: int,
    map_name: str = "entropy",
    how: str = "top_q",
    q: float = 0.1,
    chunk_size: int = 32,
    ignore: np.ndarray | None = None,
    keep: Iterable[int] = (),
    on_chunk: Callable[[int, int], None] | None = None,
) -> SegmentationScores:
    """One score per image of ``images`` ``[N, C, H, W]`` from its per-pixel ``map_name`` map
    (``entropy``, ``bald``, ``variance``; or ``max_softmax``, scored as ``1 - max_softmax`` so
    higher is still more uncertain) aggregated by ``how`` (see
    :func:`activelabel.acquisition.pixelwise.aggregate`).

    Images stream through in chunks of ``chunk_size``; only the chunk's probabilities and maps
    are held, plus the maps of the indices in ``keep`` (e.g. for heatmaps). ``ignore`` (bool
    ``[N, H, W]``) excludes pixels from the scores. ``on_chunk(done, total)`` reports progress.
    """
    n = len(images)
    wanted = set(int(i) for i in keep)
    scores = np.zeros(n, dtype=np.float64)
    kept: dict[int, PixelMaps] = {}
    starts = range(0, n, chunk_size)
    chunks = (images[s : s + chunk_size] for s in starts)
    for start, probs in zip(starts, predict_segmentation_stream(model, chunks, samples=samples, device=device, seed=seed)):
        maps = pixel_maps(probs)
        values = 1.0 - maps.max_softmax if map_name == "max_softmax" else maps.get(map_name)
        end = start + len(maps)
        scores[start:end] = aggregate(
            values, how, q=q, ignore=None if ignore is None else ignore[start:end], predicted=maps.predicted  # type: ignore[arg-type]
        )
        for i in sorted(i for i in wanted if start <= i < end):
            k = i - start
            kept[i] = PixelMaps(*(getattr(maps, f)[k : k + 1].copy() for f in ("entropy", "bald", "variance", "max_softmax", "predicted")))
        if on_chunk is not None:
            on_chunk(end, n)
    return SegmentationScores(scores=scores, kept=kept)


def predict_masks(
    model: SegmentationNet, images: np.ndarray, *, device: torch.device, chunk_size: int = 32
) -> np.ndarray:
    """Deterministic predicted masks ``[N, H, W]`` int64 (one eval pass, dropout off), chunked."""
    h, w = images.shape[2:]
    masks = [np.zeros((0, h, w), dtype=np.int64)]
    chunks = (images[s : s + chunk_size] for s in range(0, len(images), chunk_size))
    for p in predict_segmentation_stream(model, chunks, samples=0, device=device, seed=0):
        masks.append(p[0].argmax(axis=1).astype(np.int64))
    return np.concatenate(masks)


def evaluate_segmentation(
    model: SegmentationNet | list[SegmentationNet],
    images: np.ndarray,
    masks: np.ndarray,
    *,
    device: torch.device,
    samples: int = 0,
    seed: int = 0,
    ignore_index: int = 255,
    chunk_size: int = 32,
    bins: int = 15,
) -> SegmentationEvaluation:
    """mIoU, per-class IoU, pixel accuracy and pixel ECE of ``model`` on ``images`` / ``masks``.

    Probabilities are the mean over ``samples`` MC-dropout passes (0: one deterministic pass);
    chunks are accumulated into a :class:`SegmentationMeter`, so memory is one chunk's. A list
    of M models (a deep ensemble, Lakshminarayanan et al. 2017) is measured on the mean of the
    members' softmaxes (``[M * T, b, C, H, W]`` from ``predict_stream``, averaged over passes).
    """
    first = model[0] if isinstance(model, (list, tuple)) else model
    meter = SegmentationMeter(first.spec.num_classes, ignore_index=ignore_index, bins=bins)
    starts = range(0, len(images), chunk_size)
    chunks = (images[s : s + chunk_size] for s in starts)
    for start, probs in zip(starts, predict_segmentation_stream(model, chunks, samples=samples, device=device, seed=seed)):
        meter.update(probs.mean(axis=0), masks[start : start + probs.shape[1]])
    return meter.result()
