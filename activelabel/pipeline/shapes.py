"""A generated segmentation dataset for demos and tests: shapes on textured, noisy backgrounds.

Classes (index: name): ``0: background``, ``1: disc``, ``2: square``, ``3: line`` (thin, 1-2
pixels wide) and ``4: dot`` (2-5 pixels across). Lines and dots are thin and small on purpose:
their boundaries cover a large share of their pixels, so even a good model is unsure there,
which is what per-pixel uncertainty should find.

Each image is drawn from its own generator seeded by ``(seed, index)``, so image ``i`` is the
same whatever ``n`` is, and the same seed always gives the same pixels. Objects have soft
(anti-aliased) edges and colours that vary around a per-class hue; the background is a sum of
random gratings plus Gaussian noise, so neither colour nor texture alone gives the answer.
The mask labels a pixel with an object where that object's coverage is at least one half;
later objects cover earlier ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from activelabel.pipeline.masks import SegmentationImages, write_mask_png

SHAPE_CLASSES = ("background", "disc", "square", "line", "dot")
#: Per-class base colour (RGB in [0, 1]); each object varies around it.
_HUES = {1: (0.85, 0.35, 0.25), 2: (0.25, 0.55, 0.85), 3: (0.9, 0.85, 0.3), 4: (0.35, 0.8, 0.4)}


def _coverage(distance: np.ndarray) -> np.ndarray:
    """Soft coverage from a signed distance (negative inside), one pixel of anti-aliasing."""
    return np.clip(0.5 - distance, 0.0, 1.0)


def _segment_distance(yy: np.ndarray, xx: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((yy - a[0]) * ab[0] + (xx - a[1]) * ab[1]) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
    return np.hypot(yy - (a[0] + t * ab[0]), xx - (a[1] + t * ab[1]))


def _background(rng: np.random.Generator, size: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    base = rng.uniform(0.25, 0.6, size=3)
    texture = np.zeros((size, size))
    for _ in range(3):
        angle, freq, phase = rng.uniform(0, np.pi), rng.uniform(0.05, 0.4), rng.uniform(0, 2 * np.pi)
        texture += rng.uniform(0.03, 0.1) * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
    tint = rng.uniform(0.5, 1.0, size=3)
    return base[:, None, None] + tint[:, None, None] * texture[None]


def make_shape_image(seed: int, index: int, *, size: int = 64, noise: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """Image ``index`` of the dataset seeded ``seed``: float32 ``[3, size, size]`` in [0, 1] and
    its int64 mask ``[size, size]`` of indices into :data:`SHAPE_CLASSES`."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    image = _background(rng, size, yy, xx)
    mask = np.zeros((size, size), dtype=np.int64)
    scale = size / 64.0
    objects: list[tuple[int, np.ndarray]] = []
    for _ in range(rng.integers(1, 3)):
        cy, cx, r = rng.uniform(8, size - 8), rng.uniform(8, size - 8), rng.uniform(5, 11) * scale
        objects.append((1, np.hypot(yy - cy, xx - cx) - r))
    for _ in range(rng.integers(0, 3)):
        cy, cx, half = rng.uniform(8, size - 8), rng.uniform(8, size - 8), rng.uniform(4, 8) * scale
        objects.append((2, np.maximum(np.abs(yy - cy), np.abs(xx - cx)) - half))
    for _ in range(rng.integers(1, 3)):
        a, b = rng.uniform(2, size - 2, size=2), rng.uniform(2, size - 2, size=2)
        width = rng.uniform(1.0, 2.2)
        objects.append((3, _segment_distance(yy, xx, a, b) - width / 2))
    for _ in range(rng.integers(1, 5)):
        cy, cx, r = rng.uniform(3, size - 3), rng.uniform(3, size - 3), rng.uniform(1.0, 2.5)
        objects.append((4, np.hypot(yy - cy, xx - cx) - r))
    for cls, distance in objects:
        alpha = _coverage(distance)
        colour = np.clip(np.asarray(_HUES[cls]) + rng.normal(0, 0.08, size=3), 0, 1)
        image = image * (1 - alpha[None]) + colour[:, None, None] * alpha[None]
        mask[alpha >= 0.5] = cls
    image = image + rng.normal(0, noise, size=image.shape)
    return np.clip(image, 0, 1).astype(np.float32), mask


def make_shapes(n: int, *, seed: int = 0, size: int = 64, noise: float = 0.08, start: int = 0) -> SegmentationImages:
    """``n`` generated images (indices ``start .. start + n - 1``) with their masks.

    Deterministic: the same ``seed`` and index give the same pixels (see module docstring).
    URIs are ``shapes/<seed>/<index>.png``. Raises ``ValueError`` for ``n < 0`` or ``size < 16``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    images = np.zeros((n, 3, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=np.int64)
    for k in range(n):
        images[k], masks[k] = make_shape_image(seed, start + k, size=size, noise=noise)
    return SegmentationImages(
        name=f"shapes-{seed}",
        images=images,
        masks=masks,
        labels=list(SHAPE_CLASSES),
        uris=[f"shapes/{seed}/{start + k:06d}.png" for k in range(n)],
    )


def write_segmentation_folder(data: SegmentationImages, folder: str | Path) -> tuple[Path, Path]:
    """Write ``folder/images/<name>.png`` (RGB) and ``folder/masks/<name>.png`` (class index
    per pixel, 8-bit grayscale), named by each sample's URI file name. Returns both folders,
    ready for :func:`~activelabel.pipeline.masks.read_segmentation_folder`."""
    from PIL import Image

    root = Path(folder)
    images_dir, masks_dir = root / "images", root / "masks"
    images_dir.mkdir(parents=True, exist_ok=True)
    for image, mask, uri in zip(data.images, data.masks, data.uris):
        stem = Path(uri).stem
        pixels = np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
        pixels = pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1)
        Image.fromarray(np.ascontiguousarray(pixels)).save(images_dir / f"{stem}.png", format="PNG")
        write_mask_png(mask, masks_dir / f"{stem}.png")
    return images_dir, masks_dir
