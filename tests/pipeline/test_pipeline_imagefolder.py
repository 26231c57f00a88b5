"""A user's own ImageFolder: real PNG files on disk, one corrupt, read back exactly."""

from __future__ import annotations

import numpy as np
import pytest

from activelabel.errors import DatasetError
from activelabel.pipeline.datasets import load_dataset
from activelabel.pipeline.imagefolder import load_image_folder
from tests_support_imagefolder import write_folder


def test_reads_classes_uris_and_pixels_exactly(tmp_path):
    expected = write_folder(tmp_path)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    data = load_image_folder(tmp_path, size=8)
    assert data.labels == ["cat", "dog", "owl"]
    assert data.uris == sorted(expected)
    assert data.images.shape == (12, 1, 8, 8) and data.images.dtype == np.float32
    assert data.targets.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    for row, uri in enumerate(data.uris):
        np.testing.assert_allclose(data.images[row, 0], expected[uri] / 255.0, atol=1e-7)
    assert data.root == tmp_path.resolve() and data.problems == []


def test_a_corrupt_image_is_reported_and_skipped_not_fatal(tmp_path, caplog):
    write_folder(tmp_path)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    data = load_image_folder(tmp_path, size=8)
    assert len(data) == 12
    assert "dog/broken.png" not in data.uris
    assert len(data.problems) == 1 and "broken.png" in data.problems[0]
    assert any("broken.png" in record.getMessage() for record in caplog.records)


def test_resize_and_rgb(tmp_path):
    write_folder(tmp_path, size=8)
    data = load_dataset(f"imagefolder:{tmp_path}?size=16&channels=3")
    assert data.images.shape == (12, 3, 16, 16)
    # Grayscale converted to RGB: the three channels are equal.
    assert np.array_equal(data.images[:, 0], data.images[:, 2])


@pytest.mark.parametrize("layout, message", [
    ("missing", "does not exist"),
    ("one-class", "at least 2"),
    ("all-corrupt", "no readable image"),
])
def test_unusable_folders_are_clear_errors(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout == "one-class":
        (root / "only").mkdir(parents=True)
    elif layout == "all-corrupt":
        for name in ("a", "b"):
            (root / name).mkdir(parents=True)
            (root / name / "x.png").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=message):
        load_image_folder(root)


def test_bad_options_in_the_spec_are_clear_errors(tmp_path):
    write_folder(tmp_path)
    with pytest.raises(DatasetError, match="positive whole numbers"):
        load_dataset(f"imagefolder:{tmp_path}?size=big")
    with pytest.raises(DatasetError, match="channels must be 1 or 3"):
        load_dataset(f"imagefolder:{tmp_path}?channels=2")
