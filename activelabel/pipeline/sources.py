"""Which image files a campaign's data source names, without decoding a pixel (issue #8).

A source is a folder or a manifest:

- a folder in **any layout** (:func:`list_images`, recursive, for an unlabeled pool) or in the
  ImageFolder layout ``<folder>/<class>/...`` (:func:`list_image_folder`, labeled seed/test);
- a manifest (:func:`read_manifest`): CSV with a header row holding a ``path`` column and an
  optional ``label`` column (names compared case-insensitively; other columns ignored), or
  JSON Lines (``.jsonl`` / ``.ndjson``) with one ``{"path": ..., "label": ...}`` object per
  line. Relative paths are relative to the manifest's folder.

Each sample gets a URI (:func:`uri_for`): the posix path of the *resolved* file relative to the
*resolved* base folder. The campaign stores URIs, so the same file must get the same URI
whether the user wrote ``/data/pool``, ``/data/pool/`` or ``/data/x/../pool`` or went through a
symlinked parent. Listing is cheap; decoding happens later, lazily, in
:mod:`activelabel.pipeline.store`.

Every :class:`DataSourceError` message starts with the campaign-file key (e.g. ``data.pool``),
names the file (and manifest line) and says what to do.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from activelabel.errors import DatasetError

IMAGE_SUFFIXES = frozenset({
    ".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm",
})
"""File name endings (compared lower-case) taken as images when listing a folder."""

MANIFEST_SUFFIXES = frozenset({".csv", ".jsonl", ".ndjson"})


class DataSourceError(DatasetError):
    """A data source (folder or manifest) that cannot be listed as given."""


@dataclass(frozen=True)
class SourceRecord:
    """One sample of a source: its URI (relative to the source's base), resolved file, label."""

    uri: str
    path: Path
    label: str | None


def uri_for(path: str | Path, base: str | Path) -> str:
    """Posix path of the resolved ``path`` relative to the resolved ``base`` (``..`` allowed for
    files outside it): the same file always gets the same URI, however the folder was spelled."""
    resolved = Path(path).expanduser().resolve()
    root = Path(base).expanduser().resolve()
    return Path(os.path.relpath(resolved, root)).as_posix()


def _is_image(name: str) -> bool:
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def _walk_images(folder: Path) -> Iterable[Path]:
    """Image files under ``folder``, resolved (recursive, symlinked folders followed once,
    hidden skipped). The folder is resolved once and only symlinked files again: resolving
    each of a million paths component by component took most of a listing's time."""
    seen: set[str] = set()
    islink = os.path.islink
    for current, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(current)
        if real in seen:  # a symlink loop or the same folder linked twice
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if _is_image(name):
                path = os.path.join(real, name)
                yield Path(os.path.realpath(path) if islink(path) else path)


def _root(folder: str | Path, *, key: str, what: str) -> Path:
    root = Path(folder).expanduser()
    if not root.exists():
        raise DataSourceError(f"{key}: {what} {root} does not exist; check the path in the campaign file")
    if not root.is_dir():
        raise DataSourceError(f"{key}: {root} is not a folder; give a folder of images or a .csv/.jsonl manifest")
    return root.resolve()


def _records(paths: Iterable[tuple[Path, str | None]], base: Path) -> list[SourceRecord]:
    """Records of resolved paths sorted by URI; a file reached twice (symlinks) is kept once."""
    unique: dict[str, SourceRecord] = {}
    relpath = os.path.relpath
    # A file under ``base`` (the usual case): its URI is the path after the folder's. Both are
    # resolved, so this equals relpath without its per-path parsing (a third of a listing).
    prefix = str(base).rstrip(os.sep) + os.sep if os.sep == "/" else None
    for resolved, label in paths:
        text = str(resolved)
        if prefix is not None and text.startswith(prefix):
            uri = text[len(prefix):]
        else:
            uri = Path(relpath(resolved, base)).as_posix()  # uri_for of an already resolved path
        unique.setdefault(uri, SourceRecord(uri, resolved, label))
    return [unique[uri] for uri in sorted(unique)]


def list_images(folder: str | Path, *, key: str, base: str | Path | None = None) -> list[SourceRecord]:
    """Every image file under ``folder``, in any layout, sorted by URI; labels are None.

    Recursive; hidden files and folders (``.name``) and non-image files are ignored; suffixes
    are compared lower-case (``.PNG`` counts). URIs are relative to ``base`` (default: the
    folder). Raises :class:`DataSourceError` when the folder does not exist.
    """
    root = _root(folder, key=key, what="folder")
    return _records(((path, None) for path in _walk_images(root)), Path(base).resolve() if base else root)


def class_folders(folder: str | Path, *, key: str) -> list[str]:
    """Names of the first-level, non-hidden sub-folders of an ImageFolder tree, sorted."""
    root = _root(folder, key=key, what="folder")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_image_folder(
    folder: str | Path,
    *,
    key: str,
    labels: Sequence[str] | None = None,
    base: str | Path | None = None,
) -> list[SourceRecord]:
    """Images of an ImageFolder tree: label = the first-level sub-folder (deeper files count
    for that class). Sorted by URI, relative to ``base`` (default: the folder).

    Raises :class:`DataSourceError` when the folder does not exist, when images lie directly
    in it (they have no class), or when a class folder is not in ``labels`` (if given).
    Use :func:`empty_classes` to warn about classes without an image.
    """
    root = _root(folder, key=key, what="folder")
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and _is_image(p.name))
    if loose:
        shown = ", ".join(loose[:3]) + (f" and {len(loose) - 3} more" if len(loose) > 3 else "")
        raise DataSourceError(
            f"{key}: images directly in {root} ({shown}) have no class; move each into a sub-folder "
            "named after its label (<folder>/<label>/<image>)"
        )
    classes = class_folders(root, key=key)
    if labels is not None:
        unknown = [name for name in classes if name not in set(labels)]
        if unknown:
            raise DataSourceError(
                f"{key}: folder {root / unknown[0]} is not a label of the campaign "
                f"({', '.join(labels)}); rename or remove it, or add the label"
            )
    return _records(
        ((path, name) for name in classes for path in _walk_images(root / name)),
        Path(base).resolve() if base else root,
    )


def empty_classes(
    folder: str | Path, records: Sequence[SourceRecord], *, key: str, labels: Sequence[str] | None = None
) -> list[str]:
    """Class folders under ``folder`` (and ``labels``, if given) that no record carries, sorted:
    classes with no image, for the caller to warn about."""
    present = {record.label for record in records}
    expected = set(class_folders(folder, key=key)) | set(labels or ())
    return sorted(expected - present)


def _manifest_rows(manifest: Path, *, key: str) -> Iterable[tuple[int, dict]]:
    """``(line number, row)`` pairs of a CSV or JSON Lines manifest."""
    suffix = manifest.suffix.lower()
    try:
        handle = manifest.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise DataSourceError(f"{key}: cannot open manifest {manifest}: {exc.strerror or exc}") from None
    with handle:
        try:
            if suffix == ".csv":
                reader = csv.DictReader(handle)
                if reader.fieldnames is None or "path" not in [f.strip().lower() for f in reader.fieldnames]:
                    raise DataSourceError(
                        f"{key}: manifest {manifest} has no 'path' column in its header row "
                        f"(found {reader.fieldnames or 'nothing'}); "
                        "the first line must name the columns, e.g. path,label"
                    )
                for row in reader:
                    cleaned = {
                        (k or "").strip().lower(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()
                    }
                    yield reader.line_num, cleaned
                return
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataSourceError(
                        f"{key}: manifest {manifest} line {number} is not valid JSON ({exc.msg}); "
                        'write one object per line, e.g. {"path": "a.png", "label": "cat"}'
                    ) from None
                if not isinstance(row, dict):
                    raise DataSourceError(
                        f"{key}: manifest {manifest} line {number} is not a JSON object; "
                        'write one object per line, e.g. {"path": "a.png", "label": "cat"}'
                    )
                yield number, row
        except UnicodeDecodeError as exc:
            raise DataSourceError(
                f"{key}: manifest {manifest} is not UTF-8 text ({exc.reason}); save it as UTF-8"
            ) from None
        except csv.Error as exc:
            raise DataSourceError(f"{key}: manifest {manifest} is not valid CSV ({exc})") from None


def read_manifest(
    path: str | Path,
    *,
    key: str,
    labels: Sequence[str] | None = None,
    require_labels: bool = False,
    base: str | Path | None = None,
) -> list[SourceRecord]:
    """Samples listed in a CSV or JSON Lines manifest, in the manifest's order.

    A path may name row r of a ``.npy`` array as ``<file>.npy#<r>`` (see
    :mod:`activelabel.pipeline.memmap`); its URI is the array's URI plus ``#<r>``.
    Relative paths are relative to the manifest's folder; URIs are relative to ``base``
    (default: the manifest's folder). An empty label is None. Raises
    :class:`DataSourceError` (naming the manifest and line) for a missing manifest, a missing
    ``path`` column or value, a listed file that does not exist, a label outside ``labels``,
    a missing label when ``require_labels``, a malformed JSON line and a file listed twice.
    """
    manifest = Path(path).expanduser()
    if not manifest.is_file():
        raise DataSourceError(f"{key}: manifest {manifest} does not exist; check the path in the campaign file")
    if manifest.suffix.lower() not in MANIFEST_SUFFIXES:
        raise DataSourceError(f"{key}: manifest {manifest} must end in .csv, .jsonl or .ndjson")
    manifest = manifest.resolve()
    folder = manifest.parent
    root = Path(base).expanduser().resolve() if base else folder
    allowed = set(labels) if labels is not None else None
    records: list[SourceRecord] = []
    first_line: dict[str, int] = {}
    for line, row in _manifest_rows(manifest, key=key):
        where = f"manifest {manifest} line {line}"
        raw = row.get("path")
        if not isinstance(raw, str) or not raw:
            raise DataSourceError(f"{key}: {where} has no path; give each row the image file in its 'path' field")
        array_row = _array_row(raw)
        file = (folder / Path(array_row[0] if array_row else raw).expanduser()).resolve()
        if not file.is_file():
            raise DataSourceError(f"{key}: {where}: image {raw} not found (looked for {file}); fix or remove the row")
        label = row.get("label")
        label = None if label is None or label == "" else str(label)
        if label is None and require_labels:
            raise DataSourceError(f"{key}: {where} ({raw}) has no label; every row of a labeled source needs one")
        if label is not None and allowed is not None and label not in allowed:
            raise DataSourceError(
                f"{key}: {where} ({raw}) has label {label!r}, not one of the campaign's labels "
                f"({', '.join(labels)}); fix the row or add the label"
            )
        uri = Path(os.path.relpath(file, root)).as_posix() + (f"#{array_row[1]}" if array_row else "")
        if uri in first_line:
            raise DataSourceError(
                f"{key}: {where} lists {raw}, already listed on line {first_line[uri]}; list each file once"
            )
        first_line[uri] = line
        records.append(SourceRecord(uri, file, label))
    return records


def _array_row(raw: str) -> tuple[str, int] | None:
    """``("a.npy", 3)`` for a manifest path naming row 3 of an array (``a.npy#3``), else None."""
    head, sep, tail = raw.rpartition("#")
    if sep and tail.isdigit() and head.lower().endswith(".npy"):
        return head, int(tail)
    return None


def source_base(location: str | Path) -> Path:
    """The folder a source's URIs are relative to: the folder itself, or a manifest's folder."""
    path = Path(location).expanduser().resolve()
    return path if path.is_dir() else path.parent


def load_source(
    location: str | Path,
    *,
    key: str,
    labels: Sequence[str] | None = None,
    labeled: bool,
    base: str | Path | None = None,
) -> list[SourceRecord]:
    """The samples a campaign-file entry names: a folder or a ``.csv``/``.jsonl``/``.ndjson``.

    A folder is read as ImageFolder (:func:`list_image_folder`) when ``labeled``, otherwise in
    any layout (:func:`list_images`). A manifest must carry every label when ``labeled``. URIs
    are relative to ``base`` (default :func:`source_base`). Raises :class:`DataSourceError`
    when the location does not exist, has another suffix, or names no image.
    """
    path = Path(location).expanduser()
    if not path.exists():
        raise DataSourceError(
            f"{key}: folder or manifest {path} does not exist; give a folder of images or a .csv/.jsonl manifest"
        )
    if path.is_dir():
        if labeled:
            records = list_image_folder(path, key=key, labels=labels, base=base)
        else:
            records = list_images(path, key=key, base=base)
        if not records:
            raise DataSourceError(
                f"{key}: folder {path.resolve()} holds no image ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                + ("put images in one sub-folder per label" if labeled else "check the path")
            )
        return records
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise DataSourceError(
            f"{key}: {path} is neither a folder nor a manifest; give a folder or a .csv, .jsonl or .ndjson file"
        )
    records = read_manifest(path, key=key, labels=labels, require_labels=labeled, base=base)
    if not records:
        raise DataSourceError(f"{key}: manifest {path.resolve()} lists no image; add one row per image")
    return records


def file_sha256(path: str | Path, *, key: str | None = None) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks). Raises :class:`DataSourceError`."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        prefix = f"{key}: " if key else ""
        raise DataSourceError(f"{prefix}cannot read {path} to hash it: {exc.strerror or exc}") from None
    return digest.hexdigest()


def hash_files(paths: Sequence[str | Path], *, workers: int = 4, key: str | None = None) -> list[str]:
    """:func:`file_sha256` of each path, in order, on ``workers`` threads (hashlib releases
    the GIL, so threads read and hash in parallel)."""
    if workers <= 1 or len(paths) < 2:
        return [file_sha256(p, key=key) for p in paths]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: file_sha256(p, key=key), paths))


def file_signature(path: str | Path) -> tuple[int, int]:
    """``(size in bytes, modification time in ns)``: a cheap check that a file changed."""
    stat = Path(path).stat()
    return stat.st_size, stat.st_mtime_ns
