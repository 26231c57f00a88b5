"""A user's own labeled images: one sub-folder per class (as torchvision's ImageFolder lays them
out), or a labeled manifest.

``imagefolder:/data/pets?size=64&channels=3`` reads every image under ``/data/pets/<class>/``;
``manifest:/data/pets/labels.csv?size=64`` reads the images a CSV or JSON Lines manifest lists
with their ``path`` and ``label`` (:func:`~activelabel.pipeline.sources.read_manifest`, the reader
campaign files use; paths relative to the manifest's folder). Each image is
decodes it as a browser shows it (:mod:`activelabel.pipeline.decode`), converts it to grayscale
(``channels=1``, the default) or RGB (``channels=3``) and resizes it to ``size`` x ``size`` pixels
(default 28). A file that cannot be decoded is skipped and reported
(log warning + ``LabeledImages.problems``), never fatal; a source with no readable image is.
Sample URIs are paths relative to the folder (``cat/001.png``), or to the manifest's folder, so
they stay valid when the folder moves and can be served to annotators from a document root.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from activelabel.errors import DatasetError
from activelabel.pipeline.decode import read_image
from activelabel.pipeline.memmap import parse_row_uri
from activelabel.pipeline.sources import IMAGE_SUFFIXES

log = logging.getLogger(__name__)



def _read(path: Path, size: int, channels: int) -> np.ndarray:
    # The one decoder shared with Label Studio's view (EXIF, alpha over white, 16-bit scaling).
    return read_image(path, size=size, channels=channels)


def load_image_folder(folder: str | Path, *, size: int = 28, channels: int = 1):
    """Every image under ``folder/<class>/`` (any depth), classes sorted by sub-folder name."""
    root = Path(folder).expanduser().resolve()
    if root.is_file():
        raise DatasetError(f"image folder {root} is a file; for a labeled .csv/.jsonl manifest (columns path, "
                           f"label) use manifest:{root}")
    if not root.is_dir():
        raise DatasetError(f"image folder {root} does not exist")
    _check_size(size, channels)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DatasetError(f"image folder {root} needs one sub-folder per class (at least 2), found {classes}")
    files = [(path, target) for target, name in enumerate(classes) for path in sorted((root / name).rglob("*"))
             if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES]
    return _labeled_images(f"imagefolder:{root}", root, files, classes, size=size, channels=channels)


def load_labeled_manifest(manifest: str | Path, *, size: int = 28, channels: int = 1):
    """The images a labeled CSV / JSON Lines manifest lists (columns ``path`` and ``label``), in
    the manifest's order; classes are its labels, sorted. URIs are relative to its folder.

    Raises ``DatasetError`` naming the manifest (and line) for a missing file, a row without a
    label, a listed image that does not exist, a row naming an ``.npy`` array row (arrays are
    read by campaign files, not by this dataset), fewer than 2 labels, or no readable image.
    """
    from activelabel.pipeline.sources import DataSourceError, read_manifest

    _check_size(size, channels)
    path = Path(manifest).expanduser()
    if path.is_dir():
        raise DatasetError(f"manifest {path.resolve()} is a folder; give a .csv or .jsonl file with 'path' and "
                           "'label' columns, or use imagefolder:FOLDER for one sub-folder per class")
    try:
        records = read_manifest(path, key="dataset", require_labels=True)
    except DataSourceError as error:
        raise DatasetError(str(error).removeprefix("dataset: ")) from None
    root = path.resolve().parent
    arrays = [r.uri for r in records if parse_row_uri(r.uri) is not None]
    if arrays:
        raise DatasetError(f"manifest {path.resolve()} lists rows of an .npy array (e.g. {arrays[0]}); a manifest: "
                           "dataset reads image files: list image files, or run a campaign file whose pool is "
                           "the manifest")
    classes = sorted({str(r.label) for r in records})
    if len(classes) < 2:
        raise DatasetError(f"manifest {path.resolve()} needs at least 2 labels, found {classes}")
    index = {name: i for i, name in enumerate(classes)}
    files = [(r.path, index[str(r.label)]) for r in records]
    return _labeled_images(f"manifest:{path.resolve()}", root, files, classes, size=size, channels=channels)


def _check_size(size: int, channels: int) -> None:
    if channels not in (1, 3):
        raise DatasetError(f"channels must be 1 or 3, got {channels}")
    if size < 4:
        raise DatasetError(f"image size must be at least 4 pixels, got {size}")


def _labeled_images(name: str, root: Path, files: list[tuple[Path, int]], classes: list[str], *,
                    size: int, channels: int):
    """``files`` ((path, class index) pairs) read as one ``LabeledImages``; an unreadable file is
    skipped and reported, never fatal."""
    from activelabel.pipeline.datasets import LabeledImages

    images, targets, uris, problems = [], [], [], []
    for path, target in files:
        try:
            images.append(_read(path, size, channels))
        except DatasetError as problem:
            problems.append(str(problem))
            log.warning("Skipping %s", problem)
            continue
        targets.append(target)
        uris.append(Path(os.path.relpath(path, root)).as_posix())
    if not images:
        raise DatasetError(f"no readable image under {root} ({len(problems)} unreadable)")
    return LabeledImages(name, np.stack(images), np.array(targets, dtype=np.int64), classes, uris,
                         root=root, problems=problems)
