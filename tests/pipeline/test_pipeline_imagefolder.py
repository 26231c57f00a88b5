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


# A labeled manifest (trial 17 F1: "any labeled folder or manifest"; a manifest was refused).

def _manifest(root, rows: list[str], name: str = "labels.csv"):
    (root / name).write_text("path,label\n" + "".join(f"{row}\n" for row in rows), encoding="utf-8")
    return root / name


def test_a_labeled_manifest_reads_its_rows_in_order_with_their_labels(tmp_path):
    expected = write_folder(tmp_path / "photos")  # any layout: the folders' names are not labels here
    order = ["photos/owl/001.png", "photos/cat/000.png", "photos/dog/003.png", "photos/cat/002.png"]
    labels = ["bird", "mammal", "mammal", "bird"]
    manifest = _manifest(tmp_path, [f"{p},{label}" for p, label in zip(order, labels)])
    data = load_dataset(f"manifest:{manifest}?size=8")
    assert data.name == f"manifest:{manifest.resolve()}"
    assert data.labels == ["bird", "mammal"] and data.targets.tolist() == [0, 1, 1, 0]
    assert data.uris == order and data.root == tmp_path.resolve()
    for row, uri in enumerate(order):
        np.testing.assert_allclose(data.images[row, 0], expected[uri.removeprefix("photos/")] / 255.0, atol=1e-7)


def test_a_jsonl_manifest_and_an_unreadable_image_that_is_skipped(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "labels.jsonl").write_text(
        '{"path": "cat/000.png", "label": "cat"}\n{"path": "broken.png", "label": "cat"}\n'
        '{"path": "dog/000.png", "label": "dog"}\n', encoding="utf-8")
    data = load_dataset(f"manifest:{tmp_path / 'labels.jsonl'}?size=8&channels=3")
    assert data.uris == ["cat/000.png", "dog/000.png"] and data.images.shape == (2, 3, 8, 8)
    assert len(data.problems) == 1 and "broken.png" in data.problems[0]


@pytest.mark.parametrize("rows, message", [
    (["cat/000.png,cat", "dog/000.png,"], r"labels.csv line 3 \(dog/000.png\) has no label"),
    (["cat/000.png,cat", "cat/009.png,cat"], r"line 3: image cat/009.png not found"),
    (["cat/000.png,cat", "cat/000.png,dog"], "already listed on line 2"),
    (["cat/000.png,cat", "cat/001.png,cat"], r"needs at least 2 labels, found \['cat'\]"),
])
def test_unusable_manifests_are_one_clear_error_naming_the_file_and_line(tmp_path, rows, message):
    write_folder(tmp_path)
    manifest = _manifest(tmp_path, rows)
    with pytest.raises(DatasetError, match=message) as caught:
        load_dataset(f"manifest:{manifest}")
    assert str(manifest.resolve()) in str(caught.value) and not str(caught.value).startswith("dataset:")


def test_a_manifest_where_a_folder_is_expected_and_the_reverse_say_which_form_to_use(tmp_path):
    write_folder(tmp_path)
    manifest = _manifest(tmp_path, ["cat/000.png,cat", "dog/000.png,dog"])
    with pytest.raises(DatasetError, match=rf"image folder {manifest.resolve()} is a file; .* use manifest:"):
        load_dataset(f"imagefolder:{manifest}")
    with pytest.raises(DatasetError, match=r"is a folder; give a .csv or .jsonl file .* or use imagefolder:FOLDER"):
        load_dataset(f"manifest:{tmp_path}")
