"""Pixels by sample URI, read lazily: the pool never has to fit in memory (issue #8).

An :class:`ImageStore` turns sample URIs into model inputs ``[n, C, H, W]`` (float32 in
[0, 1]) and into the PNG an annotator sees. Two implementations:

- :class:`ArrayStore` — an in-memory array (bundled digits, MNIST): nothing to decode;
- :class:`FileStore` — image files under a base folder (URI = path relative to it). Its
  :meth:`~FileStore.batches` runs a ``torch.utils.data.DataLoader`` whose worker processes
  decode chunk by chunk with :func:`~activelabel.pipeline.decode.read_image`, the same decoder
  that makes the annotator's PNG (:meth:`~FileStore.png`), so the model trains on the pixels
  the annotator judged (issue #13 §2).

Unreadable images never stop a pass over the pool: :class:`ImageBatch` reports them in
``failures`` and leaves them out of ``positions``/``images``. :meth:`read` (for the few
samples a training step needs) raises :class:`~activelabel.pipeline.decode.UnreadableImageError`
naming the sample instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # torch is imported where batches are made: reading a PNG (report, status) needs no torch
    import torch

from activelabel.errors import DatasetError
from activelabel.pipeline.decode import UnreadableImageError, array_png, display_png, read_image
from activelabel.pipeline.sources import DataSourceError, file_sha256


@dataclass
class ImageBatch:
    """One chunk of a pass over URIs.

    ``positions``: int64 ``[b]``, indices into the ``uris`` given to ``batches`` (increasing);
    ``images``: float32 tensor ``[b, C, H, W]`` in [0, 1], row i is ``uris[positions[i]]``;
    ``failures``: ``(position, message)`` for each URI of the chunk that could not be read
    (the message names the sample and the reason, one line).
    """

    positions: np.ndarray
    images: torch.Tensor
    failures: list[tuple[int, str]] = field(default_factory=list)


@runtime_checkable
class ImageStore(Protocol):
    """Pixels of samples named by URI (see the module docstring)."""

    channels: int

    def read(self, uris: Sequence[str]) -> np.ndarray:
        """``float32 [n, C, H, W]`` in [0, 1]; raises UnreadableImageError naming the sample."""

    def batches(self, uris: Sequence[str], *, batch_size: int = 256, workers: int = 0) -> Iterator[ImageBatch]:
        """Chunks of the URIs in order; unreadable ones in ``failures``, never raised."""

    def png(self, uri: str) -> bytes:
        """PNG bytes of the sample as the annotator should see it."""

    def content_hash(self, uri: str) -> str:
        """Hex SHA-256 of the sample's content (file bytes, or the array's bytes)."""

    def locate(self, uri: str) -> Path | None:
        """The file behind a URI, or None for in-memory samples."""


def _check_batch_size(batch_size: int, workers: int) -> None:
    if batch_size < 1:
        raise DatasetError(f"batch_size must be at least 1, got {batch_size}")
    if workers < 0:
        raise DatasetError(f"workers must be 0 or more, got {workers}")


class ArrayStore:
    """Samples held in memory: ``images`` float32 ``[N, C, H, W]`` in [0, 1], one URI per row.

    ``content_hash`` equals :meth:`LabeledImages.content_hash` (SHA-256 of the row's bytes).
    """

    def __init__(self, images: np.ndarray, uris: Sequence[str]) -> None:
        if images.ndim != 4 or len(images) != len(uris):
            raise DatasetError(
                f"ArrayStore needs images [N, C, H, W] with one URI per row; got shape {images.shape} "
                f"and {len(uris)} URIs"
            )
        self.images = images
        self.uris = list(uris)
        self.channels = int(images.shape[1])
        self.size = int(images.shape[-1])
        self._rows = {uri: row for row, uri in enumerate(self.uris)}
        if len(self._rows) != len(self.uris):
            raise DatasetError("ArrayStore: the same URI names two rows; URIs must be unique")

    @classmethod
    def from_dataset(cls, dataset) -> ArrayStore:
        """The store of a :class:`~activelabel.pipeline.datasets.LabeledImages`."""
        return cls(dataset.images, dataset.uris)

    def __repr__(self) -> str:
        return f"ArrayStore({len(self.uris)} images {tuple(self.images.shape[1:])})"

    def _row(self, uri: str) -> int:
        try:
            return self._rows[uri]
        except KeyError:
            raise UnreadableImageError(uri, "sample is not in this in-memory dataset") from None

    def read(self, uris: Sequence[str]) -> np.ndarray:
        rows = np.fromiter((self._row(u) for u in uris), dtype=np.int64, count=len(uris))
        return np.asarray(self.images[rows], dtype=np.float32)

    def batches(self, uris: Sequence[str], *, batch_size: int = 256, workers: int = 0) -> Iterator[ImageBatch]:
        """Chunks of ``batch_size`` URIs (``workers`` is ignored: nothing to decode)."""
        import torch

        _check_batch_size(batch_size, workers)
        for start in range(0, len(uris), batch_size):
            positions, rows, failures = [], [], []
            for position in range(start, min(start + batch_size, len(uris))):
                row = self._rows.get(uris[position])
                if row is None:
                    missing = UnreadableImageError(uris[position], "sample is not in this in-memory dataset")
                    failures.append((position, str(missing)))
                else:
                    positions.append(position)
                    rows.append(row)
            images = torch.from_numpy(np.asarray(self.images[np.asarray(rows, dtype=np.int64)], dtype=np.float32))
            yield ImageBatch(np.asarray(positions, dtype=np.int64), images, failures)

    def png(self, uri: str) -> bytes:
        return array_png(self.images[self._row(uri)])

    def content_hash(self, uri: str) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.images[self._row(uri)]).tobytes()).hexdigest()

    def locate(self, uri: str) -> Path | None:
        return None


class _PackedStrings:
    """A list of strings as one byte buffer plus offsets (two numpy arrays).

    A Python list read by DataLoader workers forked from the main process touches every
    object's reference count, so each worker slowly copies the whole list (copy-on-write;
    PyTorch issue #13246). Two numpy arrays are never copied.
    """

    def __init__(self, strings: Sequence[str]) -> None:
        encoded = [s.encode("utf-8") for s in strings]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self._offsets[1:])
        self._blob = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self._blob[self._offsets[i] : self._offsets[i + 1]].tobytes().decode("utf-8")


class _DecodedFiles:
    """Item i = ``(i, float32 [C, H, W] or None, failure message or None)``; never raises.

    A map-style dataset (``__getitem__`` and ``__len__``), which is all ``DataLoader`` asks; it does
    not subclass ``torch.utils.data.Dataset`` so that this module imports without torch."""

    def __init__(self, base: Path, uris: Sequence[str], size: int, channels: int) -> None:
        self.base = str(base)
        self.uris = _PackedStrings(uris)
        self.size = size
        self.channels = channels

    def __len__(self) -> int:
        return len(self.uris)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray | None, str | None]:
        uri = self.uris[i]
        try:
            path = Path(self.base, uri).resolve()
            return i, read_image(path, size=self.size, channels=self.channels, name=uri), None
        except UnreadableImageError as exc:
            return i, None, str(exc)
        except Exception as exc:  # noqa: BLE001 — one bad file must not stop a pass over the pool
            return i, None, str(UnreadableImageError(uri, f"{type(exc).__name__}: {exc}"))


class _Collate:
    """Stack the readable items of a chunk; list the others as failures (picklable)."""

    def __init__(self, channels: int, size: int) -> None:
        self.shape = (0, channels, size, size)

    def __call__(self, items: list[tuple[int, np.ndarray | None, str | None]]) -> ImageBatch:
        import torch

        good = [(i, a) for i, a, _ in items if a is not None]
        failures = [(i, reason) for i, a, reason in items if a is None]
        positions = np.asarray([i for i, _ in good], dtype=np.int64)
        images = torch.from_numpy(np.stack([a for _, a in good])) if good else torch.zeros(self.shape)
        return ImageBatch(positions, images, failures)


class FileStore:
    """Image files under ``base``: URI ``a/b.png`` is the file ``base/a/b.png`` (resolved).

    Every image is decoded with :func:`~activelabel.pipeline.decode.read_image` and resized to
    ``size`` x ``size`` with ``channels`` (1 or 3) channels. Nothing proportional to the pool
    is kept: :meth:`batches` holds at most ``(workers * 2 + 1) * batch_size`` decoded images.
    """

    def __init__(
        self, base: str | Path, *, size: int, channels: int, multiprocessing_context: str | None = None
    ) -> None:
        if channels not in (1, 3):
            raise DatasetError(f"channels must be 1 or 3, got {channels}")
        if size < 1:
            raise DatasetError(f"image size must be positive, got {size}")
        self.base = Path(base).expanduser().resolve()
        self.size = size
        self.channels = channels
        self.multiprocessing_context = multiprocessing_context

    def __repr__(self) -> str:
        return f"FileStore({str(self.base)!r}, size={self.size}, channels={self.channels})"

    def locate(self, uri: str) -> Path:
        return (self.base / uri).resolve()

    def read(self, uris: Sequence[str]) -> np.ndarray:
        if not uris:
            return np.zeros((0, self.channels, self.size, self.size), dtype=np.float32)
        return np.stack([
            read_image(self.locate(uri), size=self.size, channels=self.channels, name=uri) for uri in uris
        ])

    def batches(self, uris: Sequence[str], *, batch_size: int = 256, workers: int = 0) -> Iterator[ImageBatch]:
        """Chunks of ``batch_size`` URIs, in order, decoded by ``workers`` processes
        (0: in this process) through a ``torch.utils.data.DataLoader``."""
        _check_batch_size(batch_size, workers)
        if not len(uris):
            return
        from torch.utils.data import DataLoader

        loader = DataLoader(
            _DecodedFiles(self.base, uris, self.size, self.channels),
            batch_size=batch_size,
            shuffle=False,
            num_workers=workers,
            collate_fn=_Collate(self.channels, self.size),
            multiprocessing_context=self.multiprocessing_context if workers else None,
        )
        yield from loader

    def png(self, uri: str) -> bytes:
        return display_png(self.locate(uri), name=uri)

    def content_hash(self, uri: str) -> str:
        """Hex SHA-256 of the file's bytes (the same as :func:`~activelabel.pipeline.sources.file_sha256`)."""
        try:
            return file_sha256(self.locate(uri))
        except DataSourceError:
            raise UnreadableImageError(uri, "cannot read the file to hash it; does it still exist?") from None
