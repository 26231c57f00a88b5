"""Pools stored as one ``.npy`` array, read lazily through a memory map (issue #11).

A million 28x28 images are 784 MB as one ``uint8`` array and a million files as a folder; the
array is the cheaper form for a team that already holds its pool as tensors. A sample of such a
pool is a row, named by the URI ``<file>.npy#<row>`` (the file relative to the data root, the
row counted from 0), e.g. ``pool.npy#41999``.

The array is opened with ``numpy.load(mmap_mode="r")``: nothing is read until a row is asked
for, and then only that row's pages. A :class:`MemmapStore` never pickles the mapped array (a
``numpy.memmap`` pickles as a full in-memory copy); each process, DataLoader workers and Dask
workers included, opens its own map on first use.

Decoding conventions (the same as :mod:`activelabel.pipeline.decode`, so a row gives the
pixels its PNG would):

- shape ``[N, H, W]`` (grayscale) or ``[N, C, H, W]`` with C = 1 or 3 (channels first);
- ``uint8`` is divided by 255; ``uint16`` is scaled by bit depth (``v * 255 / 65535``,
  rounded) as a 16-bit PNG is; ``bool`` is 0 or 255;
- floating point rows are taken as intensities in [0, 1]; a row with a value outside [0, 1]
  or NaN has no agreed display and is reported unreadable (never guessed);
- 3 -> 1 channel uses Pillow's ITU-R 601-2 luma (integer arithmetic, exactly
  ``convert("L")``) for integer rows and ``0.299 R + 0.587 G + 0.114 B`` for float rows;
  1 -> 3 replicates;
- rows whose size differs from ``size`` are resized bilinearly with Pillow, as files are.

Any other dtype or shape is refused when the file is opened, with a :class:`DatasetError`
naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from activelabel.errors import DatasetError
from activelabel.pipeline.decode import UnreadableImageError, array_png, image_array
from activelabel.pipeline.store import FileStore, ImageBatch, _check_batch_size, _PackedStrings

_ROW_URI = re.compile(r"^(?P<file>.+\.npy)#(?P<row>[0-9]+)$", re.IGNORECASE)
_FLOAT_RANGE = "float pixels outside [0, 1] or NaN; scale the array to [0, 1]"
_DTYPES = ("uint8", "uint16", "bool", "float16", "float32", "float64")


def parse_row_uri(uri: str) -> tuple[str, int] | None:
    """``("pool.npy", 7)`` for ``"pool.npy#7"``; None for any other URI (a file)."""
    match = _ROW_URI.match(uri)
    return (match["file"], int(match["row"])) if match else None


def is_npy(path: str | Path) -> bool:
    """Whether a data location names a ``.npy`` array (compared lower-case)."""
    return Path(path).suffix.lower() == ".npy"


def row_uris(name: str, count: int) -> list[str]:
    """The URIs of every row of array ``name`` (relative to the data root): ``name#0`` ..."""
    return [f"{name}#{row}" for row in range(count)]


def open_array(path: str | Path, *, key: str = "data.pool") -> np.ndarray:
    """The array in ``path``, memory-mapped read-only, checked for a shape and dtype we decode.

    Raises :class:`DatasetError` (naming ``key`` and the file) for a missing or unreadable
    file, an object array, a dtype outside uint8/uint16/bool/float, or a shape other than
    ``[N, H, W]`` / ``[N, C, H, W]`` with C in (1, 3).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise DatasetError(f"{key}: array {file} does not exist; check the path in the campaign file")
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DatasetError(
            f"{key}: {file} is not a readable .npy array ({exc}); save it with numpy.save"
        ) from None
    if array.dtype.name not in _DTYPES:
        raise DatasetError(
            f"{key}: {file} holds {array.dtype.name} pixels; use uint8 (0..255), uint16 or float in [0, 1]"
        )
    if array.ndim == 4 and array.shape[1] not in (1, 3):
        raise DatasetError(
            f"{key}: {file} has shape {array.shape}; a 4-d pool must be [N, C, H, W] with C = 1 or 3 "
            "(channels first: numpy.moveaxis(a, -1, 1) turns [N, H, W, C] into it)"
        )
    if array.ndim not in (3, 4) or 0 in array.shape[1:]:
        raise DatasetError(f"{key}: {file} has shape {array.shape}; give [N, H, W] or [N, C, H, W] images")
    return array


def _as_nchw(raw: np.ndarray) -> np.ndarray:
    return raw[:, None] if raw.ndim == 3 else raw


def _to_uint8(raw: np.ndarray) -> np.ndarray:
    """Integer rows ``[b, C, H, W]`` as displayed 8-bit values."""
    if raw.dtype == np.uint8:
        return raw
    if raw.dtype == np.bool_:
        return raw.astype(np.uint8) * np.uint8(255)
    return np.rint(raw.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)


def _luma_uint8(rgb: np.ndarray) -> np.ndarray:
    """Pillow's RGB -> L on ``[b, 3, H, W]`` uint8: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16."""
    wide = rgb.astype(np.uint32)
    return ((wide[:, 0] * 19595 + wide[:, 1] * 38470 + wide[:, 2] * 7471 + 0x8000) >> 16).astype(np.uint8)[:, None]


def decode_rows(raw: np.ndarray, *, size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(``float32 [b, channels, size, size]`` in [0, 1] for the good rows, bool ``[b]`` good).

    ``raw`` is ``[b, H, W]`` or ``[b, C, H, W]`` straight from the array (see the module
    docstring for the conventions). Bad rows are float rows outside [0, 1] or with NaN.
    """
    if channels not in (1, 3):
        raise DatasetError(f"channels must be 1 or 3, got {channels}")
    raw = _as_nchw(np.asarray(raw))
    if raw.dtype.kind == "f":
        flat = raw.reshape(len(raw), -1)
        good = np.isfinite(flat).all(axis=1) & (flat >= 0).all(axis=1) & (flat <= 1).all(axis=1)
        pixels = raw[good].astype(np.float32)
        if pixels.shape[1] == 3 and channels == 1:
            pixels = (0.299 * pixels[:, 0] + 0.587 * pixels[:, 1] + 0.114 * pixels[:, 2])[:, None].astype(np.float32)
        if pixels.shape[-1] != size or pixels.shape[-2] != size:
            pixels = np.stack([_resize_float(p, size) for p in pixels]) if len(pixels) else \
                np.zeros((0, pixels.shape[1], size, size), np.float32)
    else:
        good = np.ones(len(raw), dtype=bool)
        ints = _to_uint8(raw)
        if ints.shape[-1] == size and ints.shape[-2] == size:
            if ints.shape[1] == 3 and channels == 1:
                ints = _luma_uint8(ints)
            pixels = ints.astype(np.float32) / np.float32(255.0)
        else:  # exactly the file path: a PIL image through image_array
            from PIL import Image

            mode = "L" if ints.shape[1] == 1 else "RGB"
            pixels = np.stack([
                image_array(Image.fromarray(row[0] if mode == "L" else np.ascontiguousarray(row.transpose(1, 2, 0)),
                                            mode=mode), size=size, channels=channels)
                for row in ints
            ]) if len(ints) else np.zeros((0, channels, size, size), np.float32)
            return pixels, good
    if pixels.shape[1] == 1 and channels == 3:
        pixels = np.repeat(pixels, 3, axis=1)
    return np.ascontiguousarray(pixels, dtype=np.float32), good


def _resize_float(pixels: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.stack([
        np.asarray(Image.fromarray(channel, mode="F").resize((size, size), Image.Resampling.BILINEAR))
        for channel in pixels
    ]).clip(0.0, 1.0).astype(np.float32)


def release_rows(array: np.ndarray, first: int, stop: int) -> None:
    """Drop the mapped pages of rows ``[first, stop)`` from this process's resident set.

    They stay in the operating system's page cache (a later read costs no disk access), but
    no longer count in this process's RSS: without this, a pass over a 1M-row pool would leave
    all 784 MB of it resident. ``madvise(MADV_DONTNEED)`` on a read-only file mapping only
    drops pages; it never changes data. A no-op for arrays that are not memory maps.
    """
    import mmap

    mapping = getattr(array, "_mmap", None)
    if mapping is None or not hasattr(mmap, "MADV_DONTNEED") or stop <= first or not len(array):
        return
    row = int(np.prod(array.shape[1:])) * array.dtype.itemsize
    skip = array.offset % mmap.ALLOCATIONGRANULARITY  # where the data starts in the mapping
    start = skip + first * row
    start -= start % mmap.PAGESIZE
    end = min(skip + stop * row, len(mapping))
    if end > start:
        mapping.madvise(mmap.MADV_DONTNEED, start, end - start)


def row_hashes(array: np.ndarray, *, block: int = 65_536) -> list[str]:
    """Hex SHA-256 of each row's bytes (as stored), read ``block`` rows at a time.

    This is what :meth:`MemmapStore.content_hash` gives for each row: byte-identical rows get
    the same hash, so they become one sample (copies) as identical files do.
    """
    hashes: list[str] = []
    sha256 = hashlib.sha256
    for start in range(0, len(array), block):
        chunk = np.ascontiguousarray(array[start:start + block])
        width = chunk[0].nbytes if len(chunk) else 0
        view = memoryview(chunk.reshape(-1).view(np.uint8))
        hashes.extend(sha256(view[i * width:(i + 1) * width]).hexdigest() for i in range(len(chunk)))
        release_rows(array, start, start + len(chunk))
    return hashes


class _Chunks(Dataset):
    """Item k = chunk k of the URIs, decoded: ``(positions, images, failures)``; never raises."""

    def __init__(self, store: MemmapStore, uris: Sequence[str], batch_size: int) -> None:
        self.store = store
        self.uris = _PackedStrings(uris)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return (len(self.uris) + self.batch_size - 1) // self.batch_size

    def __getitem__(self, k: int) -> ImageBatch:
        start = k * self.batch_size
        stop = min(start + self.batch_size, len(self.uris))
        return self.store._decode_chunk([self.uris[i] for i in range(start, stop)], start)


class MemmapStore:
    """An :class:`~activelabel.pipeline.store.ImageStore` over ``.npy`` rows and image files.

    URIs ``<file>.npy#<row>`` are rows of memory-mapped arrays under ``base``; any other URI is
    an image file under ``base`` (read by a :class:`FileStore`), so a pool given as an array can
    sit next to a labeled test set given as a folder. Arrays are opened per process on first use.
    """

    def __init__(self, base: str | Path, *, size: int, channels: int,
                 multiprocessing_context: str | None = None) -> None:
        self.files = FileStore(base, size=size, channels=channels, multiprocessing_context=multiprocessing_context)
        self.base = self.files.base
        self.size = size
        self.channels = channels
        self.multiprocessing_context = multiprocessing_context
        self._arrays: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"MemmapStore({str(self.base)!r}, size={self.size}, channels={self.channels})"

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = {}  # each process maps the files itself; never copy the pixels
        return state

    def array(self, name: str) -> np.ndarray:
        """The memory-mapped array ``name`` (relative to ``base``), opened once per process."""
        if name not in self._arrays:
            self._arrays[name] = open_array(self.base / name, key=name)
        return self._arrays[name]

    def count(self, name: str) -> int:
        return int(self.array(name).shape[0])

    def _rows(self, uris: Sequence[str]) -> tuple[list[int], list[tuple[str, int]], list[tuple[int, UnreadableImageError]]]:
        """Positions of row URIs, their (file, row), and failures for rows that do not exist."""
        positions, where, failures = [], [], []
        for position, uri in enumerate(uris):
            parsed = parse_row_uri(uri)
            if parsed is None:
                continue
            name, row = parsed
            try:
                count = self.count(name)
            except DatasetError as exc:
                failures.append((position, UnreadableImageError(uri, str(exc))))
                continue
            if row >= count:
                failures.append((position, UnreadableImageError(uri, f"row {row} is past the end of {name} ({count} rows)")))
                continue
            positions.append(position)
            where.append((name, row))
        return positions, where, failures

    def _decode_chunk(self, uris: Sequence[str], offset: int = 0) -> ImageBatch:
        """Decode one chunk of URIs (rows read in file order, one fancy index per array)."""
        images, failures = self._decode(uris)
        order = sorted(images)
        stacked = (torch.from_numpy(np.stack([images[p] for p in order])) if order
                   else torch.zeros((0, self.channels, self.size, self.size)))
        return ImageBatch(np.asarray(order, dtype=np.int64) + offset, stacked,
                          sorted((p + offset, str(error)) for p, error in failures))

    def _decode(self, uris: Sequence[str]) -> tuple[dict[int, np.ndarray], list[tuple[int, UnreadableImageError]]]:
        """``{position: float32 [C, H, W]}`` of the readable URIs and ``(position, error)`` of the others."""
        images: dict[int, np.ndarray] = {}
        failures: list[tuple[int, UnreadableImageError]] = []
        positions, where, bad = self._rows(uris)
        failures.extend(bad)
        by_file: dict[str, list[tuple[int, int]]] = {}
        for position, (name, row) in zip(positions, where):
            by_file.setdefault(name, []).append((row, position))
        for name, pairs in by_file.items():
            rows = np.asarray([r for r, _ in pairs], dtype=np.int64)
            order = np.argsort(rows, kind="stable")
            array = self.array(name)
            raw = array[rows[order]]
            release_rows(array, int(rows.min()), int(rows.max()) + 1)  # copied out: RSS stays flat
            pixels, good = decode_rows(raw, size=self.size, channels=self.channels)
            kept = iter(pixels)
            for i, ok in zip(order, good):
                position = pairs[int(i)][1]
                if ok:
                    images[position] = next(kept)
                else:
                    failures.append((position, UnreadableImageError(uris[position], _FLOAT_RANGE)))
        known = {p for p, _ in bad} | set(positions)
        for position, uri in enumerate(uris):
            if position in known:
                continue
            try:
                images[position] = self.files.read([uri])[0]
            except UnreadableImageError as exc:
                failures.append((position, exc))
            except Exception as exc:  # noqa: BLE001 — one bad file must not stop a pass over the pool
                failures.append((position, UnreadableImageError(uri, f"{type(exc).__name__}: {exc}")))
        return images, failures

    def read(self, uris: Sequence[str]) -> np.ndarray:
        """``float32 [n, C, H, W]`` in [0, 1]; raises UnreadableImageError naming the first bad sample."""
        if not uris:
            return np.zeros((0, self.channels, self.size, self.size), dtype=np.float32)
        images, failures = self._decode(list(uris))
        if failures:
            raise min(failures, key=lambda f: f[0])[1]
        return np.stack([images[p] for p in range(len(uris))])

    def batches(self, uris: Sequence[str], *, batch_size: int = 256, workers: int = 0) -> Iterator[ImageBatch]:
        """Chunks of ``batch_size`` URIs in order; ``workers`` processes decode whole chunks
        (a DataLoader without automatic batching: one item is one chunk)."""
        _check_batch_size(batch_size, workers)
        if not len(uris):
            return
        chunks = _Chunks(self, uris, batch_size)
        if workers == 0:
            for k in range(len(chunks)):
                yield chunks[k]
            return
        loader = DataLoader(chunks, batch_size=None, shuffle=False, num_workers=workers,
                            multiprocessing_context=self.multiprocessing_context)
        yield from loader

    def _raw(self, uri: str) -> np.ndarray:
        parsed = parse_row_uri(uri)
        assert parsed is not None
        _, where, failures = self._rows([uri])
        if failures:
            raise failures[0][1]
        name, row = where[0]
        return np.asarray(self.array(name)[row])

    def png(self, uri: str) -> bytes:
        """The row at its own resolution and channels as PNG (a file: its displayed PNG)."""
        if parse_row_uri(uri) is None:
            return self.files.png(uri)
        raw = _as_nchw(self._raw(uri)[None])[0]
        if raw.dtype.kind == "f":
            if not (np.isfinite(raw).all() and (raw >= 0).all() and (raw <= 1).all()):
                raise UnreadableImageError(uri, _FLOAT_RANGE)
            return array_png(raw.astype(np.float32))
        return array_png(_to_uint8(raw[None])[0].astype(np.float32) / np.float32(255.0))

    def content_hash(self, uri: str) -> str:
        """Hex SHA-256 of the row's bytes as stored (a file: of the file's bytes)."""
        if parse_row_uri(uri) is None:
            return self.files.content_hash(uri)
        return hashlib.sha256(np.ascontiguousarray(self._raw(uri)).tobytes()).hexdigest()

    def signature(self, uri: str) -> tuple[int, int]:
        """(size, mtime in ns) of the file behind the URI (the whole array for a row)."""
        parsed = parse_row_uri(uri)
        stat = (self.base / (parsed[0] if parsed else uri)).stat()
        return stat.st_size, stat.st_mtime_ns

    def locate(self, uri: str) -> Path | None:
        """The image file behind a URI; None for an array row (it is not a file of its own)."""
        return None if parse_row_uri(uri) is not None else self.files.locate(uri)
