"""Heatmap PNGs: four panels, summary statistics of the drawn map, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activelabel.acquisition.pixelwise import pixel_maps, summarize_map
from activelabel.errors import InvalidArrayError
from activelabel.pipeline.heatmaps import NAME_STEM_MAX, heatmap_figure, heatmap_filenames, write_heatmap
from activelabel.pipeline.shapes import SHAPE_CLASSES, make_shapes


def _probs(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(5, 0.3), size=(4, 1, 32, 32)).transpose(0, 1, 4, 2, 3)  # [T, 1, C, H, W]


def test_heatmap_png_and_summary(tmp_path: Path) -> None:
    data = make_shapes(1, seed=0, size=32)
    maps = pixel_maps(_probs(0))
    ignore = np.zeros((32, 32), dtype=bool)
    ignore[:4] = True
    out = write_heatmap(
        tmp_path / "sub" / "h.png", data.images[0], maps.predicted[0], maps.bald[0], maps.max_softmax[0],
        labels=list(SHAPE_CLASSES), map_name="bald", q=0.2, ignore=ignore, title="sample 0",
    )
    assert out.path == tmp_path / "sub" / "h.png" and out.map_name == "bald"
    expected = summarize_map(maps.bald[0], q=0.2, ignore=ignore)
    assert out.summary == expected
    assert out.summary.max <= math.log(5) and out.summary.top_q_mean >= out.summary.mean
    with Image.open(out.path) as png:
        assert png.format == "PNG" and png.size == (1350, 360)


def _panel_brightness(path: Path, panel: int) -> float:
    with Image.open(path) as png:
        pixels = np.asarray(png.convert("L"), dtype=np.float64)
    width = pixels.shape[1] // 4
    return float(pixels[60:300, panel * width + 40 : panel * width + width - 80].mean())


def test_uncertainty_panel_shows_the_map(tmp_path: Path) -> None:
    image = make_shapes(1, seed=0, size=32).images[0]
    pred = np.zeros((32, 32), dtype=np.int64)
    soft = np.ones((32, 32))
    calm = write_heatmap(tmp_path / "calm.png", image, pred, np.zeros((32, 32)), soft, labels=list(SHAPE_CLASSES))
    wild = write_heatmap(
        tmp_path / "wild.png", image, pred, np.full((32, 32), math.log(5)), soft, labels=list(SHAPE_CLASSES)
    )
    # magma: 0 is black, log C is bright; the other panels are identical
    assert _panel_brightness(wild.path, 2) > _panel_brightness(calm.path, 2) + 100
    assert _panel_brightness(wild.path, 0) == pytest.approx(_panel_brightness(calm.path, 0))
    assert (calm.summary.mean, wild.summary.max) == pytest.approx((0.0, math.log(5)))
    # a higher top of the colour scale draws the same map darker
    dim = write_heatmap(
        tmp_path / "dim.png", image, pred, np.full((32, 32), math.log(5)), soft, labels=list(SHAPE_CLASSES), vmax=4 * math.log(5)
    )
    assert _panel_brightness(dim.path, 2) < _panel_brightness(wild.path, 2) - 50


def test_panels_take_the_shown_images_aspect(tmp_path: Path) -> None:
    # trial 15 F10: a 32 x 32 map beside a served 160 x 120 photo was drawn square
    image = make_shapes(1, seed=0, size=32).images[0]
    maps = pixel_maps(_probs(1))
    args = (image, maps.predicted[0], maps.entropy[0], maps.max_softmax[0])
    wide, _ = heatmap_figure(*args, labels=list(SHAPE_CLASSES), shown_size=(120, 160))
    tall, _ = heatmap_figure(*args, labels=list(SHAPE_CLASSES), shown_size=(130, 97))
    square, _ = heatmap_figure(*args, labels=list(SHAPE_CLASSES))
    for figure, (height, width) in ((wide, (120, 160)), (tall, (130, 97)), (square, (32, 32))):
        figure.canvas.draw()  # places the axes as the saved PNG has them
        panels = figure.axes[:1] + [ax for ax in figure.axes[1:] if ax.images][:3]
        assert len(panels) == 4
        for ax in panels:
            left, right, bottom, top = ax.images[0].get_extent()
            assert (right - left, bottom - top) == pytest.approx((width, height), abs=1)
            box = ax.get_window_extent()  # the drawn panel: the image's aspect, not a square
            assert box.width / box.height == pytest.approx(width / height, rel=0.02)
    written = write_heatmap(tmp_path / "w.png", *args, labels=list(SHAPE_CLASSES), shown_size=(120, 160))
    assert written.summary == summarize_map(maps.entropy[0])
    with pytest.raises(InvalidArrayError, match="shown_size"):
        heatmap_figure(*args, labels=list(SHAPE_CLASSES), shown_size=(0, 160))


def test_heatmap_errors(tmp_path: Path) -> None:
    image = np.zeros((3, 8, 8))
    with pytest.raises(InvalidArrayError, match="uncertainty"):
        write_heatmap(tmp_path / "x.png", image, np.zeros((8, 8), int), np.zeros((4, 4)), np.ones((8, 8)), labels=["a", "b"])
    with pytest.raises(ValueError, match="unknown uncertainty map"):
        write_heatmap(tmp_path / "x.png", image, np.zeros((8, 8), int), np.zeros((8, 8)), np.ones((8, 8)), labels=["a", "b"], map_name="foo")


def test_heatmap_file_names_come_from_the_sample_uri_and_the_round() -> None:
    names = heatmap_filenames(["shapes/0/000012.png", "cats/tabby 1.JPG", "file:///data/x.png", "../../etc/passwd",
                               "a/b.png", "a-b.png", "y" * 300 + ".png"], 7)
    assert names[:4] == ["shapes-0-000012_round-007.png", "cats-tabby-1_round-007.png", "data-x_round-007.png",
                         "etc-passwd_round-007.png"]
    # a/b.png and a-b.png sanitise alike: both get a hash of their own URI, so no file overwrites another
    assert names[4] != names[5] and all(n.startswith("a-b-") and n.endswith("_round-007.png") for n in names[4:6])
    assert names[6] == "y" * NAME_STEM_MAX + "_round-007.png"
    assert all("/" not in n for n in names) and len(set(names)) == len(names)
