"""Generated shapes dataset and the reader of a user's image + PNG mask folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activelabel.errors import DatasetError
from activelabel.pipeline.masks import MaskError, read_mask, read_segmentation_folder, write_mask_png
from activelabel.pipeline.shapes import SHAPE_CLASSES, make_shapes, write_segmentation_folder


def test_shapes_deterministic_and_has_every_class() -> None:
    a = make_shapes(12, seed=3)
    b = make_shapes(12, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    # image i does not depend on n: the 5th image alone equals the 5th of twelve
    tail = make_shapes(1, seed=3, start=4)
    np.testing.assert_array_equal(tail.images[0], a.images[4])
    assert not np.array_equal(make_shapes(1, seed=4).images[0], a.images[0])
    assert a.images.shape == (12, 3, 64, 64) and a.images.dtype == np.float32
    assert 0.0 <= a.images.min() and a.images.max() <= 1.0
    counts = np.bincount(a.masks.ravel(), minlength=len(SHAPE_CLASSES))
    assert (counts > 0).all()
    fractions = counts / counts.sum()
    assert fractions[0] > 0.7  # mostly background
    assert fractions[3] < 0.05 and fractions[4] < 0.05  # thin lines and small dots are rare
    assert a.uris[4] == "shapes/3/000004.png"


def test_thin_lines_are_thin() -> None:
    data = make_shapes(20, seed=0)
    line = data.masks == 3
    # a line pixel's 3x3 neighbourhood holds background: no thick blobs of class 3
    padded = np.pad(line, ((0, 0), (2, 2), (2, 2)))
    full_5x5 = np.ones_like(line)
    for dy in range(5):
        for dx in range(5):
            full_5x5 &= padded[:, dy : dy + 64, dx : dx + 64]
    assert line.sum() > 0 and full_5x5.sum() == 0


def test_write_and_read_folder_round_trip(tmp_path: Path) -> None:
    data = make_shapes(5, seed=1)
    images_dir, masks_dir = write_segmentation_folder(data, tmp_path / "shapes")
    (masks_dir / "000004.png").unlink()  # one unlabeled image
    read = read_segmentation_folder(images_dir, masks_dir, labels=SHAPE_CLASSES, size=64)
    assert read.uris == [f"{i:06d}.png" for i in range(5)]
    assert read.has_mask.tolist() == [True, True, True, True, False]
    np.testing.assert_array_equal(read.masks[:4], data.masks[:4])
    assert (read.masks[4] == 255).all()
    assert np.abs(read.images - data.images).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(MaskError, match="000004.png.*missing"):
        read_segmentation_folder(images_dir, masks_dir, labels=SHAPE_CLASSES, size=64, require_masks=True)
    # resized: nearest neighbour keeps class indices (no blends)
    small = read_segmentation_folder(images_dir, masks_dir, labels=SHAPE_CLASSES, size=32)
    assert set(np.unique(small.masks[:4])) <= set(range(5))
    assert small.masks.shape == (5, 32, 32)
    np.testing.assert_array_equal(small.masks[0], data.masks[0][1::2, 1::2])  # pixel centres


def test_palette_png_reads_indices(tmp_path: Path) -> None:
    values = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    image = Image.new("P", (2, 2))
    image.putdata(values.ravel().tolist())
    # the colours shown differ from the indices: the index is the class
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) + [224, 224, 192])
    image.save(tmp_path / "voc.png")
    assert read_mask(tmp_path / "voc.png", num_classes=3).tolist() == [[0, 1], [2, 255]]


def test_colour_mask_with_palette(tmp_path: Path) -> None:
    rgb = np.array([[[0, 0, 0], [255, 0, 0]], [[0, 255, 0], [255, 255, 255]]], dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    palette = {(0, 0, 0): 0, (255, 0, 0): 1, (0, 255, 0): 2, (255, 255, 255): 255}
    assert read_mask(tmp_path / "colour.png", num_classes=3, palette=palette).tolist() == [[0, 1], [2, 255]]
    with pytest.raises(MaskError, match=r"colour.png.*colour image.*palette"):
        read_mask(tmp_path / "colour.png", num_classes=3)
    with pytest.raises(MaskError, match=r"colour.png.*\(255, 255, 255\).*x=1, y=1"):
        read_mask(tmp_path / "colour.png", num_classes=3, palette={k: v for k, v in palette.items() if v != 255})


def test_bad_masks_name_the_file(tmp_path: Path) -> None:
    write_mask_png(np.array([[0, 7], [1, 1]]), tmp_path / "bad.png")
    with pytest.raises(MaskError, match=r"bad.png.*values \[7\].*0..2"):
        read_mask(tmp_path / "bad.png", num_classes=3)
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(MaskError, match="junk.png"):
        read_mask(tmp_path / "junk.png", num_classes=3)
    # a mask whose size differs from its image
    data = make_shapes(1, seed=0)
    images_dir, masks_dir = write_segmentation_folder(data, tmp_path / "one")
    write_mask_png(np.zeros((10, 10), dtype=np.uint8), masks_dir / "000000.png")
    with pytest.raises(MaskError, match=r"000000.png.*10x10.*64x64"):
        read_segmentation_folder(images_dir, masks_dir, labels=SHAPE_CLASSES, size=64)
    with pytest.raises(DatasetError, match="ignore_index 1"):
        read_segmentation_folder(images_dir, masks_dir, labels=SHAPE_CLASSES, size=64, ignore_index=1)
