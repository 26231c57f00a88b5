"""Listing a data source (folder in any layout, ImageFolder, CSV / JSON Lines manifest)."""

from __future__ import annotations

import json
import os

import pytest

from activelabel.errors import DatasetError
from activelabel.pipeline.sources import (
    DataSourceError,
    SourceRecord,
    empty_classes,
    file_sha256,
    file_signature,
    hash_files,
    list_image_folder,
    list_images,
    load_source,
    read_manifest,
    uri_for,
)
from tests_support_images import write_png


def _pool(root):
    for relative in ("b.png", "a/x.JPG", "a/deep/y.jpeg", "z/w.PNG", ".hidden/h.png", "a/.h.png", "a/readme.txt"):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if relative.endswith(".txt"):
            path.write_text("not an image")
        else:
            write_png(path, value=len(relative))
    return root


def test_list_images_is_recursive_sorted_and_skips_hidden_and_non_images(tmp_path):
    root = _pool(tmp_path / "pool")
    records = list_images(root, key="data.pool")
    assert [r.uri for r in records] == ["a/deep/y.jpeg", "a/x.JPG", "b.png", "z/w.PNG"]
    assert all(r.label is None for r in records)
    assert records[2] == SourceRecord("b.png", (root / "b.png").resolve(), None)


def test_same_uri_whatever_the_folder_spelling(tmp_path):
    root = _pool(tmp_path / "pool")
    (tmp_path / "link").symlink_to(root)
    expected = [r.uri for r in list_images(root, key="k")]
    for spelling in (f"{root}/", f"{tmp_path}/pool/../pool", str(tmp_path / "link"), f"{tmp_path / 'link'}/"):
        assert [r.uri for r in list_images(spelling, key="k")] == expected
    assert uri_for(tmp_path / "link" / "b.png", root) == "b.png"
    assert uri_for(tmp_path / "elsewhere" / "c.png", root) == "../elsewhere/c.png"


def test_symlink_loops_and_twice_linked_files_are_listed_once(tmp_path):
    root = _pool(tmp_path / "pool")
    (root / "a" / "loop").symlink_to(root / "a")
    (root / "again.png").symlink_to(root / "b.png")
    uris = [r.uri for r in list_images(root, key="k")]
    assert uris == ["a/deep/y.jpeg", "a/x.JPG", "b.png", "z/w.PNG"]


def test_image_folder_labels_from_first_level_folders(tmp_path):
    root = tmp_path / "seed"
    for relative in ("cat/1.png", "cat/sub/2.png", "dog/3.png"):
        write_png(root / relative)
    (root / "owl").mkdir()
    records = list_image_folder(root, key="data.seed", labels=["cat", "dog", "owl"])
    assert [(r.uri, r.label) for r in records] == [("cat/1.png", "cat"), ("cat/sub/2.png", "cat"), ("dog/3.png", "dog")]
    assert empty_classes(root, records, key="data.seed") == ["owl"]
    assert empty_classes(root, records, key="data.seed", labels=["cat", "dog", "owl", "yak"]) == ["owl", "yak"]


def test_image_folder_refuses_unknown_class_and_loose_images(tmp_path):
    root = tmp_path / "seed"
    write_png(root / "cat" / "1.png")
    write_png(root / "horse" / "1.png")
    with pytest.raises(DataSourceError, match=r"^data.seed: folder .*horse is not a label of the campaign \(cat, dog\)"):
        list_image_folder(root, key="data.seed", labels=["cat", "dog"])
    write_png(root / "stray.png")
    with pytest.raises(DataSourceError, match=r"data.seed: images directly in .* \(stray.png\) have no class"):
        list_image_folder(root, key="data.seed")


def test_csv_manifest_relative_absolute_and_labels(tmp_path):
    write_png(tmp_path / "imgs" / "a.png")
    write_png(tmp_path / "imgs" / "b.png")
    outside = tmp_path / "other" / "c.png"
    write_png(outside)
    manifest = tmp_path / "imgs" / "list.csv"
    manifest.write_text(f"Path, Label,notes\na.png,cat,x\n./b.png,,\n{outside},dog,\n")
    records = read_manifest(manifest, key="data.pool", labels=["cat", "dog"])
    assert [(r.uri, r.label) for r in records] == [("a.png", "cat"), ("b.png", None), ("../other/c.png", "dog")]
    assert records[2].path == outside.resolve()
    with pytest.raises(DataSourceError, match=r"data.seed: manifest .*list.csv line 3 \(./b.png\) has no label"):
        read_manifest(manifest, key="data.seed", require_labels=True)
    with pytest.raises(DataSourceError, match=r"line 2 \(a.png\) has label 'cat', not one of the campaign's labels \(dog\)"):
        read_manifest(manifest, key="data.seed", labels=["dog"])


@pytest.mark.parametrize("text, message", [
    ("file,label\na.png,cat\n", r"has no 'path' column in its header row"),
    ("path\na.png\nmissing.png\n", r"list.csv line 3: image missing.png not found"),
    ("path\na.png\n./a.png\n", r"list.csv line 3 lists ./a.png, already listed on line 2; list each file once"),
])
def test_csv_manifest_errors_name_the_line(tmp_path, text, message):
    write_png(tmp_path / "a.png")
    manifest = tmp_path / "list.csv"
    manifest.write_text(text)
    with pytest.raises(DataSourceError, match=r"^data.pool: .*" + message):
        read_manifest(manifest, key="data.pool")


def test_json_lines_manifest_and_its_errors(tmp_path):
    write_png(tmp_path / "a.png")
    write_png(tmp_path / "b.png")
    manifest = tmp_path / "pool.ndjson"
    manifest.write_text(json.dumps({"path": "a.png", "label": 3}) + "\n\n" + json.dumps({"path": "b.png"}) + "\n")
    records = read_manifest(manifest, key="data.pool")
    assert [(r.uri, r.label) for r in records] == [("a.png", "3"), ("b.png", None)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"path": "a.png"}) + "\n{not json\n")
    with pytest.raises(DataSourceError, match=r"data.pool: manifest .*bad.jsonl line 2 is not valid JSON"):
        read_manifest(bad, key="data.pool")
    bad.write_text('["a.png"]\n')
    with pytest.raises(DataSourceError, match="line 1 is not a JSON object"):
        read_manifest(bad, key="data.pool")
    with pytest.raises(DataSourceError, match=r"data.pool: manifest .*nope.jsonl does not exist"):
        read_manifest(tmp_path / "nope.jsonl", key="data.pool")


def test_load_source_dispatches_and_names_missing_locations(tmp_path):
    root = tmp_path / "seed"
    write_png(root / "cat" / "1.png")
    write_png(root / "dog" / "2.png")
    assert [r.label for r in load_source(root, key="data.seed", labeled=True)] == ["cat", "dog"]
    assert [r.label for r in load_source(root, key="data.pool", labeled=False)] == [None, None]
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\nseed/cat/1.png,cat\n")
    assert load_source(manifest, key="data.seed", labeled=True)[0].uri == "seed/cat/1.png"
    pool_base = load_source(manifest, key="data.seed", labeled=True, base=root)
    assert pool_base[0].uri == "cat/1.png"
    with pytest.raises(DataSourceError, match=r"^data.pool: folder or manifest /x/nope does not exist; "):
        load_source("/x/nope", key="data.pool", labeled=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError, match=r"data.pool: folder .*empty holds no image"):
        load_source(tmp_path / "empty", key="data.pool", labeled=False)
    (tmp_path / "list.txt").write_text("a.png\n")
    with pytest.raises(DataSourceError, match=r"neither a folder nor a manifest"):
        load_source(tmp_path / "list.txt", key="data.pool", labeled=False)
    assert issubclass(DataSourceError, DatasetError)


def test_hashes_and_signatures(tmp_path):
    paths = []
    for i in range(6):
        path = tmp_path / f"{i}.bin"
        path.write_bytes(bytes([i]) * (1000 + i))
        paths.append(path)
    import hashlib

    expected = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    assert hash_files(paths, workers=3) == expected
    assert hash_files(paths, workers=1) == expected
    assert file_sha256(paths[0]) == expected[0]
    size, mtime = file_signature(paths[2])
    assert size == 1002
    os.utime(paths[2], ns=(mtime + 10**9, mtime + 10**9))
    assert file_signature(paths[2]) == (1002, mtime + 10**9)
    with pytest.raises(DataSourceError, match=r"data.pool: cannot read .*gone.bin to hash it"):
        hash_files([tmp_path / "gone.bin", paths[0]], key="data.pool")
