"""Pools given as one .npy array: rows read lazily through a memory map, decoded exactly as the
same images saved as PNG files are (real files, real PIL, real DataLoader workers)."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activelabel.errors import DatasetError
from activelabel.pipeline.decode import UnreadableImageError
from activelabel.pipeline.identity import sample_identities
from activelabel.pipeline.memmap import MemmapStore, open_array, parse_row_uri, row_hashes, row_uris
from activelabel.pipeline.sources import file_sha256, read_manifest
from activelabel.pipeline.store import FileStore


def _gray(tmp_path: Path, count: int = 40, size: int = 20) -> np.ndarray:
    rows = np.random.default_rng(0).integers(0, 256, (count, size, size), dtype=np.uint8)
    np.save(tmp_path / "pool.npy", rows)
    for i, row in enumerate(rows):
        Image.fromarray(row, mode="L").save(tmp_path / f"g{i}.png")
    return rows


def test_row_uris_parse_back() -> None:
    assert row_uris("sub/pool.npy", 3) == ["sub/pool.npy#0", "sub/pool.npy#1", "sub/pool.npy#2"]
    assert parse_row_uri("sub/pool.npy#41999") == ("sub/pool.npy", 41999)
    assert parse_row_uri("a/b.png") is None and parse_row_uri("pool.npy#x") is None


@pytest.mark.parametrize(("size", "channels"), [(20, 1), (12, 1), (20, 3), (28, 3)])
def test_uint8_gray_rows_decode_as_their_png_files(tmp_path, size, channels) -> None:
    _gray(tmp_path)
    rows = MemmapStore(tmp_path, size=size, channels=channels).read([f"pool.npy#{i}" for i in range(40)])
    files = FileStore(tmp_path, size=size, channels=channels).read([f"g{i}.png" for i in range(40)])
    assert rows.dtype == np.float32 and rows.shape == (40, channels, size, size)
    np.testing.assert_array_equal(rows, files)


@pytest.mark.parametrize(("size", "channels"), [(16, 1), (16, 3), (10, 1)])
def test_uint8_rgb_rows_decode_as_their_png_files(tmp_path, size, channels) -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (12, 3, 16, 16), dtype=np.uint8)
    np.save(tmp_path / "rgb.npy", rgb)
    for i, row in enumerate(rgb):
        Image.fromarray(np.ascontiguousarray(row.transpose(1, 2, 0)), mode="RGB").save(tmp_path / f"c{i}.png")
    rows = MemmapStore(tmp_path, size=size, channels=channels).read([f"rgb.npy#{i}" for i in range(12)])
    files = FileStore(tmp_path, size=size, channels=channels).read([f"c{i}.png" for i in range(12)])
    np.testing.assert_array_equal(rows, files)  # 3 -> 1 channel: Pillow's integer luma, exactly


def test_uint16_rows_are_scaled_by_bit_depth_like_a_16_bit_png(tmp_path) -> None:
    deep = np.random.default_rng(2).integers(0, 65536, (6, 14, 14), dtype=np.uint16)
    np.save(tmp_path / "deep.npy", deep)
    for i, row in enumerate(deep):
        Image.fromarray(row).save(tmp_path / f"d{i}.png")
    rows = MemmapStore(tmp_path, size=14, channels=1).read([f"deep.npy#{i}" for i in range(6)])
    files = FileStore(tmp_path, size=14, channels=1).read([f"d{i}.png" for i in range(6)])
    np.testing.assert_array_equal(rows, files)
    assert rows.max() > 0.9  # not clipped white, not scaled to black


def test_float_rows_in_range_are_kept_and_out_of_range_rows_are_reported(tmp_path) -> None:
    pixels = np.random.default_rng(3).random((5, 1, 8, 8), dtype=np.float32)
    pixels[2, 0, 0, 0] = 1.5
    pixels[4, 0, 3, 3] = np.nan
    np.save(tmp_path / "f.npy", pixels)
    store = MemmapStore(tmp_path, size=8, channels=1)
    uris = [f"f.npy#{i}" for i in range(5)]
    (batch,) = list(store.batches(uris, batch_size=8))
    assert batch.positions.tolist() == [0, 1, 3]
    np.testing.assert_array_equal(batch.images.numpy(), pixels[[0, 1, 3]])
    assert [p for p, _ in batch.failures] == [2, 4]
    assert all("outside [0, 1]" in message and uris[p] in message for p, message in batch.failures)
    with pytest.raises(UnreadableImageError) as caught:
        store.read(["f.npy#0", "f.npy#2"])
    assert caught.value.path == "f.npy#2"


def test_batches_with_workers_equal_one_process_and_report_missing_rows_and_files(tmp_path) -> None:
    _gray(tmp_path)
    store = MemmapStore(tmp_path, size=20, channels=1)
    uris = [f"pool.npy#{i}" for i in range(40)] + ["g3.png", "gone.png", "pool.npy#40", "other.npy#0"]

    def flat(workers: int):
        batches = list(store.batches(uris, batch_size=16, workers=workers))
        return (np.concatenate([b.positions for b in batches]), np.concatenate([b.images.numpy() for b in batches]),
                [f for b in batches for f in b.failures])

    positions, images, failures = flat(0)
    positions2, images2, failures2 = flat(2)
    assert positions.tolist() == list(range(41)) and positions2.tolist() == positions.tolist()
    np.testing.assert_array_equal(images, images2)
    np.testing.assert_array_equal(images[40], images[3])  # the file g3.png is row 3
    assert failures == failures2 and [p for p, _ in failures] == [41, 42, 43]
    assert "past the end of pool.npy (40 rows)" in failures[1][1] and "does not exist" in failures[2][1]


def test_the_array_is_mapped_never_loaded_nor_pickled(tmp_path) -> None:
    rows = np.zeros((2_000, 28, 28), dtype=np.uint8)  # 1.5 MB
    np.save(tmp_path / "big.npy", rows)
    store = MemmapStore(tmp_path, size=28, channels=1)
    store.read(["big.npy#1999"])
    assert isinstance(store.array("big.npy"), np.memmap)
    assert len(pickle.dumps(store)) < 10_000  # what a DataLoader or Dask worker receives


def test_png_is_the_row_at_its_own_size(tmp_path) -> None:
    import io

    _gray(tmp_path)
    shown = Image.open(io.BytesIO(MemmapStore(tmp_path, size=28, channels=1).png("pool.npy#5")))
    np.testing.assert_array_equal(np.asarray(shown), np.asarray(Image.open(tmp_path / "g5.png")))


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.zeros((3, 4, 4), dtype=np.int64), "int64 pixels"),
        (np.zeros((3, 4, 4, 3), dtype=np.uint8), "[N, C, H, W] with C = 1 or 3"),
        (np.zeros((3, 4), dtype=np.uint8), "give [N, H, W] or [N, C, H, W]"),
    ],
)
def test_arrays_we_cannot_decode_are_refused_naming_the_file(tmp_path, array, words) -> None:
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(DatasetError) as caught:
        open_array(tmp_path / "bad.npy")
    assert words in str(caught.value) and "bad.npy" in str(caught.value) and "data.pool" in str(caught.value)


def test_row_hashes_are_the_sha256_of_each_row_and_copies_share_one(tmp_path) -> None:
    rows = _gray(tmp_path, count=10)
    rows[7] = rows[2]
    np.save(tmp_path / "pool.npy", rows)
    store = MemmapStore(tmp_path, size=20, channels=1)
    expected = [hashlib.sha256(row.tobytes()).hexdigest() for row in rows]
    assert row_hashes(open_array(tmp_path / "pool.npy"), block=3) == expected
    assert store.content_hash("pool.npy#4") == expected[4]
    uris = ["g1.png", "pool.npy#9", "pool.npy#2", "pool.npy#7"]
    hashes, signatures = sample_identities(store, uris, workers=1)
    assert hashes == [file_sha256(tmp_path / "g1.png"), expected[9], expected[2], expected[2]]
    stat = (tmp_path / "pool.npy").stat()
    assert signatures[1:] == [(stat.st_size, stat.st_mtime_ns)] * 3


def test_a_manifest_may_name_array_rows(tmp_path) -> None:
    _gray(tmp_path, count=5)
    (tmp_path / "m.csv").write_text("path,label\npool.npy#3,a\npool.npy#0,b\ng1.png,a\n")
    records = read_manifest(tmp_path / "m.csv", key="annotator.truth")
    assert [(r.uri, r.label) for r in records] == [("pool.npy#3", "a"), ("pool.npy#0", "b"), ("g1.png", "a")]
