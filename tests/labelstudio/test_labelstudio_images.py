"""Image values for tasks: embedded PNGs, URL prefixes, Label Studio local files (and their limits)."""

from __future__ import annotations

import base64
import io
import uuid

import httpx
import numpy as np
import pytest
from PIL import Image

from activelabel.annotation.images import (
    LocalFilesSource,
    UnsafeImagePathError,
    dataset_image_source,
    png_bytes,
    png_data_uri,
    url_prefix_source,
)
from activelabel.errors import DatasetError
from activelabel.pipeline.datasets import LabeledImages

pytestmark = pytest.mark.labelstudio


def _decode(uri: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):])))


def test_data_uri_png_decodes_to_the_same_pixels():
    gray = np.linspace(0, 1, 6 * 10).reshape(1, 6, 10)
    image = _decode(png_data_uri(gray))
    assert image.size == (10, 6) and image.mode == "L"
    assert np.array_equal(np.asarray(image), np.rint(gray[0] * 255).astype(np.uint8))

    rgb = np.random.default_rng(0).random((3, 5, 7))
    image = _decode(png_data_uri(rgb, scale=3))
    assert image.size == (21, 15) and image.mode == "RGB"
    assert np.array_equal(np.asarray(image)[::3, ::3], np.rint(np.moveaxis(rgb, 0, -1) * 255).astype(np.uint8))


def test_out_of_range_values_are_clipped_and_bad_shapes_refused():
    image = _decode(png_data_uri(np.array([[[-1.0, 2.0]]])))
    assert np.asarray(image).tolist() == [[0, 255]]
    with pytest.raises(DatasetError, match=r"shape \(2, 4, 4\)"):
        png_bytes(np.zeros((2, 4, 4)))
    with pytest.raises(DatasetError, match="not finite"):
        png_bytes(np.full((1, 2, 2), np.nan))


def test_dataset_source_enlarges_small_images():
    images = np.random.default_rng(1).random((3, 1, 8, 8)).astype(np.float32)
    dataset = LabeledImages("tiny", images, np.array([0, 1, 0]), ["a", "b"], ["t/0", "t/1", "t/2"])
    image = _decode(dataset_image_source(dataset, min_size=64)("t/1"))
    assert image.size == (64, 64)
    assert np.array_equal(np.asarray(image)[::8, ::8], np.rint(images[1, 0] * 255).astype(np.uint8))


def test_url_prefix_source_joins_and_refuses_escapes():
    source = url_prefix_source("http://images.example/v1/")
    assert source("a/b c.png") == "http://images.example/v1/a/b%20c.png"
    for bad in ["../secret.png", "a/../../x.png", "/etc/passwd"]:
        with pytest.raises(UnsafeImagePathError):
            source(bad)


def test_local_files_maps_paths_under_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "imgs").mkdir(parents=True)
    (root / "imgs" / "a 1.png").write_bytes(b"x")
    source = LocalFilesSource(root)

    assert source("imgs/a 1.png") == "/data/local-files/?d=imgs/a%201.png"
    assert source(str(root / "imgs" / "a 1.png")) == "/data/local-files/?d=imgs/a%201.png"
    assert source("imgs/sub/../a 1.png") == "/data/local-files/?d=imgs/a%201.png"
    assert source.local_path("imgs/a 1.png") == (root / "imgs" / "a 1.png").resolve()


def test_local_files_takes_a_root_given_with_a_tilde(tmp_path, monkeypatch):
    # `--document-root=~/ls-files` reaches us unexpanded (the shell expands ~ only at a word's start)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "ls-files" / "imgs").mkdir(parents=True)
    (tmp_path / "ls-files" / "imgs" / "a.png").write_bytes(b"x")
    source = LocalFilesSource("~/ls-files")

    assert source.document_root == (tmp_path / "ls-files").resolve()
    assert source("imgs/a.png") == "/data/local-files/?d=imgs/a.png"


def test_local_files_refuses_paths_outside_the_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    (root / "link.png").symlink_to(outside)
    (root / "linkdir").symlink_to(tmp_path)
    source = LocalFilesSource(root)

    for bad in ["../secret.png", str(outside), "link.png", "linkdir/secret.png", ".", "/etc/passwd"]:
        with pytest.raises(UnsafeImagePathError) as caught:
            source(bad)
        assert bad in str(caught.value) and str(root.resolve()) in str(caught.value)


def test_label_studio_serves_local_files_to_the_project(ls_server, make_annotator, make_tasks, ls_client):
    if ls_server.document_root is None:
        pytest.skip("ACTIVELABEL_TEST_LS_DOCUMENT_ROOT is not set for this Label Studio server")
    folder = ls_server.document_root / f"imgs-{uuid.uuid4().hex[:8]}"
    requests = make_tasks([0.4])
    file = folder / requests[0].uri
    file.parent.mkdir(parents=True)
    file.write_bytes(png_bytes(np.random.default_rng(2).random((1, 12, 9))))
    source = LocalFilesSource(ls_server.document_root, base_dir=folder, storage_path=folder)
    annotator = make_annotator(image_source=source)

    ids = annotator.push(requests)

    task = ls_client.tasks.get(id=int(ids[requests[0].sample_id]))
    value = task.data["image"]
    assert value == f"/data/local-files/?d={folder.name}/{requests[0].uri}"
    storages = ls_client.import_storage.local.list(project=annotator.project_id)
    assert [s.path for s in storages] == [str(folder.resolve())]
    response = httpx.get(ls_server.url + value, headers={"Authorization": f"Token {ls_server.api_key}"})
    assert response.status_code == 200, response.text[:300]
    assert Image.open(io.BytesIO(response.content)).size == (9, 12)
    # Without the token the file is not served.
    assert httpx.get(ls_server.url + value).status_code in (401, 403)
