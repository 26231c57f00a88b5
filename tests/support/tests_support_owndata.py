"""An unlabeled image folder as a team brings it: digits saved as PNG and JPEG files in nested,
meaningless folders, with the true labels only in a separate manifest (for simulations)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

LABELS = [str(d) for d in range(10)]


def write_unlabeled_pool(root: Path, *, count: int = 120, seed: int = 0, jpeg_every: int = 5) -> dict[str, str]:
    """``count`` digit images under ``root`` (batches of 7 per sub-folder, some JPEG, some with
    upper-case extensions). Returns ``{posix path relative to root: true label}``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(digits.target), size=count, replace=False)
    truth = {}
    for n, row in enumerate(rows):
        folder = root / f"batch-{n // 7:02d}" / ("night" if n % 3 else "day")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (digits.images[row] * 255 / 16).astype(np.uint8)
        image = Image.fromarray(pixels, mode="L").resize((16, 16), Image.NEAREST)
        if n % jpeg_every == 0:
            name = f"img{n:04d}.JPG" if n % 2 else f"img{n:04d}.jpg"
            image.convert("RGB").save(folder / name, quality=95)
        else:
            name = f"img{n:04d}.png"
            image.save(folder / name)
        truth[(folder / name).relative_to(root).as_posix()] = str(digits.target[row])
    (root / ".DS_Store").write_bytes(b"junk")  # hidden and non-image files are ignored
    (root / "README.txt").write_text("not an image")
    return truth


def write_manifest(path: Path, rows: dict[str, str], *, base: Path) -> Path:
    """A CSV manifest ``path,label`` with paths relative to the manifest's folder."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for rel, label in rows.items():
            writer.writerow([os.path.relpath(base / rel, path.parent), label])
    return path
