"""Dataset loading: the bundled digits, MNIST IDX files (real and hand-written), and errors."""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from activelabel.errors import DatasetError
from activelabel.pipeline.datasets import (
    LabeledImages,
    load_dataset,
    load_digits_images,
    load_mnist_images,
)

# tests/pipeline/<this file> -> parents[2] is the repo root; the shared data sits beside it.
MNIST_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "MNIST"
IMAGES = "train-images-idx3-ubyte"
LABELS = "train-labels-idx1-ubyte"

needs_mnist = pytest.mark.skipif(
    not (MNIST_DIR / "raw" / f"{IMAGES}.gz").is_file(),
    reason=f"real MNIST files not found under {MNIST_DIR}/raw (shared data not mounted)",
)


def _idx_images(pixels: np.ndarray) -> bytes:
    """IDX3: magic 2051, count, rows, cols (big-endian uint32) then uint8 pixels; offset 16."""
    n, rows, cols = pixels.shape
    return struct.pack(">IIII", 2051, n, rows, cols) + pixels.astype(np.uint8).tobytes()


def _idx_labels(labels: np.ndarray) -> bytes:
    """IDX1: magic 2049, count (big-endian uint32) then uint8 labels; offset 8."""
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


def _fake_mnist(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    pixels[0, 0, 0], pixels[0, 0, 1] = 0, 255  # make sure both ends of the range appear
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    return pixels, labels


# --- digits -------------------------------------------------------------------------------


def test_digits_shape_dtype_range_targets_labels_uris() -> None:
    data = load_dataset("digits")
    assert data.name == "digits"
    assert len(data) == 1797
    assert data.images.shape == (1797, 1, 8, 8)
    assert data.images.dtype == np.float32
    assert float(data.images.min()) == 0.0
    assert float(data.images.max()) == 1.0  # sklearn digits go 0..16, divided by 16
    assert data.targets.dtype == np.int64
    assert sorted(set(data.targets.tolist())) == list(range(10))
    assert data.labels == [str(c) for c in range(10)]
    assert data.uris[0] == "digits/0"
    assert data.uris[-1] == "digits/1796"
    assert data.uris == [f"digits/{i}" for i in range(1797)]


def test_digits_match_sklearn_pixels_and_targets() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    data = load_dataset("digits")
    np.testing.assert_array_equal(data.images[:, 0] * 16.0, bunch.images.astype(np.float32))
    np.testing.assert_array_equal(data.targets, bunch.target)


def test_load_dataset_is_cached_per_spec() -> None:
    assert load_dataset("digits") is load_dataset("digits")


def test_indices_of_maps_uris_in_given_order() -> None:
    data = load_dataset("digits")
    rows = data.indices_of(["digits/5", "digits/0", "digits/1796", "digits/5"])
    assert rows.dtype == np.int64
    assert rows.tolist() == [5, 0, 1796, 5]
    assert data.indices_of([]).tolist() == []


def test_indices_of_names_the_missing_uri() -> None:
    data = load_dataset("digits")
    with pytest.raises(DatasetError, match="digits/99999") as info:
        data.indices_of(["digits/1", "digits/99999"])
    assert "'digits'" in str(info.value)


def test_content_hash_is_stable_and_distinguishes_images() -> None:
    data = load_dataset("digits")
    first = data.content_hash(0)
    assert first == data.content_hash(0)
    assert first == load_digits_images().content_hash(0)  # a fresh load hashes the same
    assert first == hashlib.sha256(data.images[0].tobytes()).hexdigest()
    assert len(first) == 64
    assert not np.array_equal(data.images[0], data.images[1])
    assert data.content_hash(1) != first


def test_labeled_images_rejects_mismatched_lengths() -> None:
    with pytest.raises(DatasetError, match="do not match"):
        LabeledImages("x", np.zeros((2, 1, 8, 8), np.float32), np.zeros(3, np.int64), ["0"], ["a", "b"])


# --- real MNIST ---------------------------------------------------------------------------


@needs_mnist
def test_real_mnist_first_images_and_labels() -> None:
    data = load_mnist_images(MNIST_DIR, limit=10)
    assert data.name == "mnist"
    assert data.images.shape == (10, 1, 28, 28)
    assert data.images.dtype == np.float32
    assert 0.0 <= float(data.images.min()) and float(data.images.max()) <= 1.0
    assert float(data.images.max()) == 1.0  # every MNIST digit has saturated pixels
    # The well-known first five training labels.
    assert data.targets[:5].tolist() == [5, 0, 4, 1, 9]
    assert data.labels == [str(c) for c in range(10)]
    assert data.uris == [f"mnist/train/{i}" for i in range(10)]


@needs_mnist
def test_real_mnist_via_spec_honours_limit_and_torchvision_layout() -> None:
    # The parent folder holds MNIST/raw/*.gz, the layout torchvision downloads.
    data = load_dataset(f"mnist:{MNIST_DIR.parent}?limit=123")
    assert data.images.shape == (123, 1, 28, 28)
    assert len(data.targets) == 123
    assert data.targets[:5].tolist() == [5, 0, 4, 1, 9]


# --- hand-written IDX files ---------------------------------------------------------------


def test_torchvision_layout_uncompressed(tmp_path: Path) -> None:
    pixels, labels = _fake_mnist(5)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / IMAGES).write_bytes(_idx_images(pixels))
    (raw / LABELS).write_bytes(_idx_labels(labels))

    data = load_dataset(f"mnist:{tmp_path}")
    assert data.images.shape == (5, 1, 28, 28)
    assert data.images.dtype == np.float32
    np.testing.assert_allclose(data.images[:, 0], pixels.astype(np.float32) / 255.0, rtol=0, atol=0)
    assert float(data.images.min()) == 0.0 and float(data.images.max()) == 1.0
    assert data.targets.dtype == np.int64
    assert data.targets.tolist() == labels.tolist()
    assert data.uris == [f"mnist/train/{i}" for i in range(5)]


def test_flat_gzip_layout_and_limit(tmp_path: Path) -> None:
    pixels, labels = _fake_mnist(6, seed=1)
    (tmp_path / f"{IMAGES}.gz").write_bytes(gzip.compress(_idx_images(pixels)))
    (tmp_path / f"{LABELS}.gz").write_bytes(gzip.compress(_idx_labels(labels)))

    data = load_dataset(f"mnist:{tmp_path}?limit=4")
    assert data.images.shape == (4, 1, 28, 28)
    assert data.targets.tolist() == labels[:4].tolist()
    np.testing.assert_array_equal(data.images[3, 0] * 255.0, pixels[3].astype(np.float32))
    full = load_mnist_images(tmp_path)
    assert len(full) == 6


def test_missing_files_error_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=IMAGES):
        load_mnist_images(tmp_path)


def test_missing_labels_file_is_named(tmp_path: Path) -> None:
    pixels, _ = _fake_mnist(2)
    (tmp_path / IMAGES).write_bytes(_idx_images(pixels))
    with pytest.raises(DatasetError, match=LABELS):
        load_mnist_images(tmp_path)


def test_nonexistent_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"mnist:{missing}")


def test_truncated_gzip_is_a_dataset_error(tmp_path: Path) -> None:
    pixels, labels = _fake_mnist(4)
    blob = gzip.compress(_idx_images(pixels))
    (tmp_path / f"{IMAGES}.gz").write_bytes(blob[: len(blob) // 2])
    (tmp_path / f"{LABELS}.gz").write_bytes(gzip.compress(_idx_labels(labels)))
    with pytest.raises(DatasetError, match=IMAGES):
        load_mnist_images(tmp_path)


def test_not_gzip_at_all_is_a_dataset_error(tmp_path: Path) -> None:
    (tmp_path / f"{IMAGES}.gz").write_bytes(b"this is not a gzip stream")
    (tmp_path / f"{LABELS}.gz").write_bytes(b"neither is this")
    with pytest.raises(DatasetError, match="cannot read MNIST file"):
        load_mnist_images(tmp_path)


def test_corrupt_deflate_data_is_a_dataset_error(tmp_path: Path) -> None:
    # A valid gzip header followed by a deflate block of the reserved type 3: byte 10 is the
    # first block header (bit 0 BFINAL, bits 1-2 BTYPE) -> 0b111 makes zlib raise zlib.error,
    # which is neither OSError, EOFError nor ValueError.
    pixels, labels = _fake_mnist(4)
    blob = bytearray(gzip.compress(_idx_images(pixels)))
    blob[10] = 0b111
    (tmp_path / f"{IMAGES}.gz").write_bytes(bytes(blob))
    (tmp_path / f"{LABELS}.gz").write_bytes(gzip.compress(_idx_labels(labels)))
    with pytest.raises(DatasetError, match=IMAGES):
        load_mnist_images(tmp_path)


def test_count_mismatch_between_images_and_labels(tmp_path: Path) -> None:
    pixels, labels = _fake_mnist(3)
    (tmp_path / IMAGES).write_bytes(_idx_images(pixels))
    (tmp_path / LABELS).write_bytes(_idx_labels(labels[:2]))
    with pytest.raises(DatasetError, match="disagree") as info:
        load_mnist_images(tmp_path)
    assert f"{3 * 28 * 28} pixels for 2 labels" in str(info.value)


@pytest.mark.parametrize("spec", ["nope", "digits:extra", "mnist", "mnist:", "cifar:/x"])
def test_unknown_spec_lists_valid_forms(spec: str) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset(spec)
    message = str(info.value)
    assert repr(spec) in message
    assert "'digits'" in message
    assert "mnist:/path/to/folder[?limit=N]" in message


def test_non_numeric_limit_is_a_dataset_error(tmp_path: Path) -> None:
    pixels, labels = _fake_mnist(2)
    (tmp_path / IMAGES).write_bytes(_idx_images(pixels))
    (tmp_path / LABELS).write_bytes(_idx_labels(labels))
    with pytest.raises(DatasetError, match="limit"):
        load_dataset(f"mnist:{tmp_path}?limit=abc")


@needs_mnist
def test_real_mnist_test_split_is_the_10k_t10k_files() -> None:
    data = load_mnist_images(MNIST_DIR, split="test")
    assert data.images.shape == (10000, 1, 28, 28)
    # The well-known first five test labels (t10k-labels-idx1-ubyte).
    assert data.targets[:5].tolist() == [7, 2, 1, 0, 4]
    assert np.bincount(data.targets, minlength=10).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert data.uris[:2] == ["mnist/test/0", "mnist/test/1"]


def test_mnist_unknown_split_is_refused(tmp_path) -> None:
    with pytest.raises(DatasetError, match="split must be one of"):
        load_mnist_images(tmp_path, split="validation")
