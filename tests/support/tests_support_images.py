"""Writes small real image files (PNG) for the data-layer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path, *, value: int = 0, size: int = 8) -> np.ndarray:
    """A ``size`` x ``size`` grayscale PNG whose pixels are ``value`` (and 255 at [0, 0]),
    written whatever the suffix says (JPEG suffixes get JPEG files). Returns the pixels."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size, size), value % 256, dtype=np.uint8)
    pixels[0, 0] = 255
    image = Image.fromarray(pixels, mode="L")
    if path.suffix.lower() in (".jpg", ".jpeg"):
        image.save(path, format="JPEG", quality=100)
    else:
        image.save(path, format="PNG")
    return pixels


def write_pool(root, count: int, *, size: int = 28, seed: int = 0) -> list[str]:
    """``count`` random ``size`` x ``size`` grayscale PNGs in 100-file sub-folders under
    ``root`` (skipped when already there: callers cache pools in tmp). Returns relative paths."""
    root = Path(root)
    marker = root / f".complete-{count}-{size}"
    names = [f"{i // 100:04d}/{i:06d}.png" for i in range(count)]
    if marker.exists():
        return names
    rng = np.random.default_rng(seed)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").save(path, compress_level=1)
    marker.write_text("ok")
    return names
