"""Writes small ImageFolder trees of real PNG files for tests in several folders."""

from __future__ import annotations

import numpy as np
from PIL import Image


def write_folder(root, classes=("cat", "dog", "owl"), per_class=4, size=8):
    """PNG files whose pixels encode (class, index); returns ``{relative path: pixels}``."""
    expected = {}
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((size, size), 10 * c + i, dtype=np.uint8)
            pixels[0, 0] = 255
            Image.fromarray(pixels, mode="L").save(root / name / f"{i:03d}.png")
            expected[f"{name}/{i:03d}.png"] = pixels
    return expected
