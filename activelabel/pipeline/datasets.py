"""Labeled image arrays the pipeline can train on, loaded from named sources.

A source is named by a short spec string stored with the campaign, so every process that
resumes the campaign loads the very same samples:

- ``digits`` — scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download);
- ``imagefolder:/path[?size=28&channels=1]`` — your own images, one sub-folder per class
  (see :mod:`activelabel.pipeline.imagefolder`);
- ``manifest:/path/labels.csv[?size=28&channels=1]`` — your own images listed with their labels in
  a CSV or JSON Lines manifest (columns ``path``, ``label``; same module);
- ``mnist:/path/to/dir`` — the MNIST IDX files (``train-images-idx3-ubyte[.gz]`` and
  ``train-labels-idx1-ubyte[.gz]``) in that folder, or in ``dir/MNIST/raw`` as torchvision
  lays them out. ``mnist:/dir?limit=5000`` keeps the first 5,000 images.
  ``mnist:/dir?test=t10k`` adds the 10,000 official test images (``t10k-*`` files) as the
  campaign's test split (``LabeledImages.test_uris``); the pool is then the training images
  (``limit`` caps those only), and ``test_fraction`` is not used. Without ``test``, a campaign
  draws a seeded ``test_fraction`` of the training images as its test split.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np

from activelabel.errors import DatasetError


@dataclass(frozen=True)
class LabeledImages:
    """Images ``[N, channels, H, W]`` as float32 in [0, 1], integer targets and class names."""

    name: str
    images: np.ndarray
    targets: np.ndarray
    labels: list[str]
    uris: list[str]
    # Folder the URIs are relative to, for datasets read from files (None: in memory only).
    root: Path | None = None
    # Files that could not be read and were skipped, one message each.
    problems: list[str] = field(default_factory=list, compare=False)
    # URIs of a test split given with the data (MNIST's t10k images); empty: none given, a
    # campaign draws its test split from the images.
    test_uris: tuple[str, ...] = ()
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.images) != len(self.targets) or len(self.images) != len(self.uris):
            raise DatasetError(
                f"dataset {self.name!r}: {len(self.images)} images, {len(self.targets)} targets "
                f"and {len(self.uris)} uris do not match"
            )
        self._index.update({uri: i for i, uri in enumerate(self.uris)})

    def __len__(self) -> int:
        return len(self.uris)

    def indices_of(self, uris: list[str]) -> np.ndarray:
        """Row numbers of the given sample URIs (raises DatasetError naming a missing one)."""
        try:
            return np.fromiter((self._index[u] for u in uris), dtype=np.int64, count=len(uris))
        except KeyError as exc:
            raise DatasetError(f"sample {exc.args[0]!r} is not in dataset {self.name!r}") from None

    def content_hash(self, i: int) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.images[i]).tobytes()).hexdigest()


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits: images (N, 8, 8) float64 in 0..16, targets (N,) int64.

    Read from the CSV that ships inside scikit-learn (what ``sklearn.datasets.load_digits``
    parses, the same way), without importing ``sklearn.datasets``: that import costs ~1 s per
    process (~2.7 s on a loaded machine), paid by every `activelabel demo` run. Falls back to
    ``load_digits`` when a scikit-learn release moves the file.
    """
    spec = importlib.util.find_spec("sklearn")  # locates the package without importing it
    locations = list(spec.submodule_search_locations or []) if spec else []
    csv = Path(locations[0]) / "datasets" / "data" / "digits.csv.gz" if locations else None
    if csv is not None and csv.is_file():
        with gzip.open(csv, "rt") as handle:
            data = np.loadtxt(handle, delimiter=",")
        return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target


def load_digits_images() -> LabeledImages:
    pixels, target = _digits_arrays()
    images = (pixels.astype(np.float32) / 16.0)[:, None, :, :]
    targets = target.astype(np.int64)
    uris = [f"digits/{i}" for i in range(len(targets))]
    return LabeledImages("digits", images, targets, [str(c) for c in range(10)], uris)


def _read_idx(path: Path, offset: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise DatasetError(f"cannot read MNIST file {path}: {exc}") from None


def _find(folder: Path, stem: str) -> Path:
    for base in (folder, folder / "MNIST" / "raw", folder / "raw"):
        for candidate in (base / stem, base / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    raise DatasetError(f"no {stem}[.gz] under {folder} (looked in ., MNIST/raw, raw)")


MNIST_SPLITS = {"train": "train", "test": "t10k"}


def load_mnist_images(folder: str | Path, limit: int | None = None, split: str = "train") -> LabeledImages:
    """MNIST from its IDX files: ``split="train"`` (60,000 images, ``train-*``) or ``"test"``
    (the 10,000 test images, ``t10k-*``), as float32 ``[N, 1, 28, 28]`` in [0, 1].

    URIs are ``mnist/<split>/<row>``. Raises :class:`DatasetError` naming the folder or file
    when the folder, a file, or a readable image/label pair is missing.
    """
    if split not in MNIST_SPLITS:
        raise DatasetError(f"MNIST split must be one of {sorted(MNIST_SPLITS)}, got {split!r}")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DatasetError(f"MNIST folder {root} does not exist")
    stem = MNIST_SPLITS[split]
    pixels = _read_idx(_find(root, f"{stem}-images-idx3-ubyte"), offset=16)
    targets = _read_idx(_find(root, f"{stem}-labels-idx1-ubyte"), offset=8).astype(np.int64)
    if pixels.size != len(targets) * 28 * 28:
        raise DatasetError(
            f"MNIST files under {root} disagree: {pixels.size} pixels for {len(targets)} labels"
        )
    images = pixels.reshape(-1, 1, 28, 28)
    if limit is not None:
        images, targets = images[:limit], targets[:limit]
    uris = [f"mnist/{split}/{i}" for i in range(len(targets))]
    return LabeledImages(
        "mnist", images.astype(np.float32) / 255.0, targets, [str(c) for c in range(10)], uris
    )


def _limit(spec: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise DatasetError(f"options must be positive whole numbers in dataset {spec!r}, got {value!r}")
    return int(value)


def named_test_split(spec: str) -> str | None:
    """The test split a dataset spec names (``mnist:/dir?test=t10k``: ``'t10k'``, checked when
    the dataset loads); ``None`` when the campaign holds out a seeded ``test_fraction`` instead."""
    kind, _, rest = spec.partition(":")
    if kind != "mnist":
        return None
    return parse_qs(rest.partition("?")[2]).get("test", [None])[0]


@lru_cache(maxsize=4)
def load_dataset(spec: str) -> LabeledImages:
    """Load the dataset a campaign names (cached per process: rounds reload it often)."""
    kind, _, rest = spec.partition(":")
    if kind == "digits" and not rest:
        return load_digits_images()
    if kind in ("imagefolder", "manifest") and rest:
        from activelabel.pipeline.imagefolder import load_image_folder, load_labeled_manifest

        path, _, query = rest.partition("?")
        options = parse_qs(query)
        size = _limit(spec, options.get("size", ["28"])[0])
        channels = _limit(spec, options.get("channels", ["1"])[0])
        load = load_image_folder if kind == "imagefolder" else load_labeled_manifest
        return load(path, size=size or 28, channels=channels or 1)
    if kind == "mnist" and rest:
        path, _, query = rest.partition("?")
        options = parse_qs(query)
        train = load_mnist_images(path, _limit(spec, options.get("limit", [None])[0]))
        test = named_test_split(spec)
        if test is None:
            return train
        if test != "t10k":
            raise DatasetError(
                f"dataset {spec!r}: test={test!r} is not known; use test=t10k (the 10,000 MNIST test "
                "images as the test split) or leave it out (a seeded test_fraction of the training images)"
            )
        return with_test_split(train, load_mnist_images(path, split="test"))
    raise DatasetError(
        f"unknown dataset {spec!r}; use 'digits', 'imagefolder:/path/to/folder[?size=N&channels=1|3]', "
        "'manifest:/path/to/labels.csv[?size=N&channels=1|3]' or 'mnist:/path/to/folder[?limit=N][&test=t10k]'"
    )


def with_test_split(pool: LabeledImages, test: LabeledImages) -> LabeledImages:
    """``pool`` and ``test`` as one dataset whose ``test_uris`` are ``test``'s URIs (the given
    test split: never in the pool, never selected). Raises DatasetError when the label sets
    differ or a URI appears in both."""
    if pool.labels != test.labels:
        raise DatasetError(f"dataset {pool.name!r}: test labels {test.labels} differ from {pool.labels}")
    if set(pool.uris) & set(test.uris):
        raise DatasetError(f"dataset {pool.name!r}: the test split shares URIs with the pool")
    return LabeledImages(
        pool.name, np.concatenate([pool.images, test.images]), np.concatenate([pool.targets, test.targets]),
        list(pool.labels), list(pool.uris) + list(test.uris), pool.root, list(pool.problems) + list(test.problems),
        tuple(test.uris),
    )
