"""ImageStore: lazy, chunked reading of real files (and in-memory arrays) by URI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from activelabel.pipeline.decode import UnreadableImageError, read_image
from activelabel.pipeline.sources import list_images
from activelabel.pipeline.store import ArrayStore, FileStore, ImageBatch, ImageStore
from tests_support_images import write_pool


@pytest.fixture(scope="module")
def small_pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    names = write_pool(root, 23, size=12)
    (root / "0000" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root, sorted(names + ["0000/broken.png"])


def _collect(batches):
    positions, images, failures = [], [], []
    for batch in batches:
        assert isinstance(batch, ImageBatch) and batch.images.dtype == torch.float32
        assert batch.positions.dtype == np.int64 and len(batch.positions) == len(batch.images)
        positions.append(batch.positions)
        images.append(batch.images.numpy())
        failures.extend(batch.failures)
    return np.concatenate(positions), np.concatenate(images), failures


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_equal_read_and_report_the_corrupt_file(small_pool, workers):
    root, uris = small_pool
    store = FileStore(root, size=10, channels=1)
    assert isinstance(store, ImageStore)
    positions, images, failures = _collect(store.batches(uris, batch_size=5, workers=workers))
    broken = uris.index("0000/broken.png")
    assert positions.tolist() == [i for i in range(len(uris)) if i != broken]
    assert [p for p, _ in failures] == [broken]
    assert "cannot read image 0000/broken.png: " in failures[0][1] and "not an image file" in failures[0][1]
    good = [uris[i] for i in positions]
    np.testing.assert_array_equal(images, store.read(good))
    assert images.shape == (len(good), 1, 10, 10)
    # Each row is the same pixels the shared decoder gives for that file.
    np.testing.assert_array_equal(images[3], read_image(root / good[3], size=10, channels=1))


def test_read_names_the_unreadable_sample_and_png_hash_locate(small_pool):
    root, uris = small_pool
    store = FileStore(f"{root}/", size=12, channels=3)
    with pytest.raises(UnreadableImageError, match="0000/broken.png: not an image file"):
        store.read(["0000/000001.png", "0000/broken.png"])
    with pytest.raises(UnreadableImageError, match="nope.png: file does not exist"):
        store.read(["nope.png"])
    assert store.read([]).shape == (0, 3, 12, 12)
    path = root / "0000" / "000002.png"
    assert store.locate("0000/000002.png") == path.resolve()
    assert store.content_hash("0000/000002.png") == hashlib.sha256(path.read_bytes()).hexdigest()
    shown = np.asarray(Image.open(io.BytesIO(store.png("0000/000002.png"))))
    assert np.array_equal(shown, np.asarray(Image.open(path)))  # full resolution, same pixels
    rgb = store.read(["0000/000002.png"])[0]
    assert rgb.shape == (3, 12, 12) and np.array_equal(rgb[0], rgb[2])
    assert rgb[0, 0, 0] == np.float32(shown[0, 0]) / np.float32(255.0)


def test_uris_from_sources_work_with_a_store_on_the_same_folder(small_pool, tmp_path):
    root, _ = small_pool
    (tmp_path / "link").symlink_to(root)
    records = list_images(tmp_path / "link", key="data.pool")
    store = FileStore(tmp_path / "link", size=8, channels=1)
    positions, images, failures = _collect(store.batches([r.uri for r in records], batch_size=64))
    assert len(positions) == len(records) - 1 and len(failures) == 1


def test_array_store_batches_read_png_and_hash():
    images = np.random.default_rng(0).random((7, 1, 4, 4)).astype(np.float32)
    uris = [f"digits/{i}" for i in range(7)]
    store = ArrayStore(images, uris)
    assert isinstance(store, ImageStore) and store.channels == 1 and store.locate("digits/1") is None
    positions, got, failures = _collect(store.batches(["digits/5", "digits/x", "digits/0"], batch_size=2))
    assert positions.tolist() == [0, 2]
    assert failures == [(1, "cannot read image digits/x: sample is not in this in-memory dataset")]
    np.testing.assert_array_equal(got, images[[5, 0]])
    np.testing.assert_array_equal(store.read(["digits/3"]), images[[3]])
    assert store.content_hash("digits/2") == hashlib.sha256(images[2].tobytes()).hexdigest()
    png = np.asarray(Image.open(io.BytesIO(store.png("digits/4"))))
    np.testing.assert_array_equal(png, np.rint(images[4, 0] * 255).astype(np.uint8))
    with pytest.raises(UnreadableImageError, match="digits/99"):
        store.read(["digits/99"])


_MEASURE = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from activelabel.pipeline.store import FileStore
    root, count, workers, keep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "keep"
    uris = [f"{i // 100:04d}/{i:06d}.png" for i in range(count)]
    kept, seen = [], 0
    for batch in FileStore(root, size=64, channels=3).batches(uris, batch_size=64, workers=workers):
        seen += len(batch.positions)
        if keep:
            kept.append(batch.images.numpy().copy())
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so a child forked from a large
    # pytest process would report the parent's size; VmHWM belongs to this program's memory.
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print(json.dumps({
        "seen": seen,
        "self_kb": hwm,
        "children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }))
""")


def _peak(root, count, workers, keep=False):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(root), str(count), str(workers), "keep" if keep else "drop"],
        capture_output=True, text=True, timeout=180, env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["seen"] == count
    return result


def test_peak_memory_does_not_grow_with_the_pool(tmp_path_factory):
    # Each file is read at 64x64 RGB: 48 KiB as float32, so keeping 2,000 of them costs ~94 MiB
    # and keeping 200 ~9 MiB. A lazy pass must stay within MARGIN of the small pool's peak.
    root = tmp_path_factory.mktemp("memory-pool")
    write_pool(root, 2000, size=28)
    margin_kb = 40 * 1024
    small, large = _peak(root, 200, 0), _peak(root, 2000, 0)
    assert large["self_kb"] - small["self_kb"] < margin_kb, (small, large)
    small2, large2 = _peak(root, 200, 2), _peak(root, 2000, 2)
    assert large2["self_kb"] - small2["self_kb"] < margin_kb, (small2, large2)
    assert large2["children_kb"] - small2["children_kb"] < margin_kb, (small2, large2)
    # The bound is sensitive: a pass that keeps every image does exceed it.
    hoarding = _peak(root, 2000, 0, keep=True)
    assert hoarding["self_kb"] - small["self_kb"] > margin_kb + 20 * 1024, (small, hoarding)


def _data_uri_image(uri: str) -> Image.Image:
    import base64

    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):])))


def test_store_image_source_shows_the_pixels_the_model_reads(tmp_path):
    from activelabel.annotation.images import store_image_source

    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[4, :, 3] = 255  # black stroke only in alpha
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "stroke.png")
    deep = (np.arange(100, dtype=np.uint32) * 600).astype(np.uint16).reshape(10, 10)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    big = np.full((150, 200), 7, dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png")
    store = FileStore(tmp_path, size=10, channels=1)
    source = store_image_source(store, min_size=30)

    shown = _data_uri_image(source("stroke.png"))
    assert shown.size == (30, 30)  # 10 px enlarged 3x by pixel repetition
    pixels = np.asarray(shown.convert("L"))[::3, ::3] / np.float32(255.0)
    np.testing.assert_array_equal(pixels, store.read(["stroke.png"])[0, 0])  # what the model reads
    assert pixels[4].max() == 0.0 and pixels[0].min() == 1.0

    shown16 = np.asarray(_data_uri_image(source("deep.png")))[::3, ::3] / np.float32(255.0)
    np.testing.assert_array_equal(shown16, store.read(["deep.png"])[0, 0])
    assert _data_uri_image(source("big.png")).size == (200, 150)  # large enough: unchanged

    memory = ArrayStore(np.full((1, 1, 4, 4), 0.5, dtype=np.float32), ["digits/0"])
    small = _data_uri_image(store_image_source(memory, min_size=128)("digits/0"))
    assert small.size == (128, 128) and np.all(np.asarray(small) == 128)
    with pytest.raises(UnreadableImageError, match="missing.png: file does not exist"):
        source("missing.png")
