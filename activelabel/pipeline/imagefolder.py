"""A user's own images: one sub-folder per class, as torchvision's ImageFolder lays them out.

``imagefolder:/data/pets?size=64&channels=3`` reads every image under ``/data/pets/<class>/``,
decodes it as a browser shows it (:mod:`activelabel.pipeline.decode`), converts it to grayscale
(``channels=1``, the default) or RGB (``channels=3``) and resizes it to ``size`` x ``size`` pixels
(default 28). A file that cannot be decoded is skipped and reported
(log warning + ``LabeledImages.problems``), never fatal; a folder with no readable image is.
Sample URIs are paths relative to the folder (``cat/001.png``), so they stay valid when the
folder moves and can be served to annotators from a document root.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from activelabel.errors import DatasetError
from activelabel.pipeline.decode import read_image
from activelabel.pipeline.sources import IMAGE_SUFFIXES

log = logging.getLogger(__name__)



def _read(path: Path, size: int, channels: int) -> np.ndarray:
    # The one decoder shared with Label Studio's view (EXIF, alpha over white, 16-bit scaling).
    return read_image(path, size=size, channels=channels)


def load_image_folder(folder: str | Path, *, size: int = 28, channels: int = 1):
    from activelabel.pipeline.datasets import LabeledImages

    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    if channels not in (1, 3):
        raise DatasetError(f"channels must be 1 or 3, got {channels}")
    if size < 4:
        raise DatasetError(f"image size must be at least 4 pixels, got {size}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DatasetError(f"image folder {root} needs one sub-folder per class (at least 2), found {classes}")
    images, targets, uris, problems = [], [], [], []
    for target, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                images.append(_read(path, size, channels))
            except DatasetError as problem:
                problems.append(str(problem))
                log.warning("Skipping %s", problem)
                continue
            targets.append(target)
            uris.append(path.relative_to(root).as_posix())
    if not images:
        raise DatasetError(f"no readable image under {root} ({len(problems)} unreadable)")
    return LabeledImages(
        f"imagefolder:{root}", np.stack(images), np.array(targets, dtype=np.int64), classes, uris,
        root=root, problems=problems,
    )
