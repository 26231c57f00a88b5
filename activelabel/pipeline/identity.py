"""Each sample's identity at campaign creation: a content hash and a cheap change signature.

The hash (hex SHA-256) makes byte-identical samples one sample and lets a later run notice a
changed file; the signature ``(size in bytes, mtime in ns)`` lets that later run skip hashing
an unchanged file. Two kinds of sample, two costs:

- an image file is read whole and hashed; :func:`sample_identities` spreads the files over
  worker *processes* (reading and hashing ten thousand small files is mostly Python and
  system-call overhead per file, which threads do not spread over cores);
- a row of a ``.npy`` array (:mod:`activelabel.pipeline.memmap`) is hashed straight from the
  memory map, a block of rows at a time, with no file opened per row; its signature is the
  array file's own.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from activelabel.pipeline.cpus import usable_cpus
from activelabel.pipeline.memmap import parse_row_uri, release_rows, row_hashes
from activelabel.pipeline.sources import file_sha256, file_signature

Signature = tuple[int, int]

#: Files per task sent to a hashing process (amortises the inter-process round trip).
FILES_PER_TASK = 512


def default_workers() -> int:
    """Hashing processes by default: the CPUs this process may use, at most 8."""
    return min(8, usable_cpus())


def _hash_and_sign(paths: list[str]) -> list[tuple[str, Signature]]:
    return [(file_sha256(p, key="data"), file_signature(p)) for p in paths]


def file_identities(paths: Sequence[str | Path], *, workers: int | None = None) -> list[tuple[str, Signature]]:
    """``(sha256 hex, (size, mtime_ns))`` of each file, in order, on ``workers`` processes
    (default :func:`default_workers`; 1 or a few files: in this process).

    Raises :class:`~activelabel.pipeline.sources.DataSourceError` naming an unreadable file.
    """
    workers = default_workers() if workers is None else workers
    names = [str(p) for p in paths]
    if workers <= 1 or len(names) <= FILES_PER_TASK:
        return _hash_and_sign(names)
    tasks = [names[i:i + FILES_PER_TASK] for i in range(0, len(names), FILES_PER_TASK)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return [pair for part in pool.map(_hash_and_sign, tasks) for pair in part]


def sample_identities(
    store, uris: Sequence[str], *, workers: int | None = None
) -> tuple[list[str], list[Signature | None]]:
    """(content hashes, signatures) of ``uris`` in order: files hashed on processes, array rows
    from their memory map (a row's signature is its array file's).

    ``store`` is the campaign's image store (``locate`` gives a file's path; a store with array
    rows has ``array(name)`` and ``signature(uri)``).
    """
    hashes: list[str | None] = [None] * len(uris)
    signatures: list[Signature | None] = [None] * len(uris)
    files: list[int] = []
    rows_of: dict[str, list[tuple[int, int]]] = {}
    for i, uri in enumerate(uris):
        parsed = parse_row_uri(uri)
        if parsed is None:
            files.append(i)
        else:
            rows_of.setdefault(parsed[0], []).append((parsed[1], i))
    for name, pairs in rows_of.items():
        array = store.array(name)
        signature = store.signature(f"{name}#0")
        rows = np.fromiter((r for r, _ in pairs), dtype=np.int64, count=len(pairs))
        if len(rows) == len(array) and np.array_equal(rows, np.arange(len(array))):
            digests = row_hashes(array)  # the whole array in order: read it block by block
        else:
            order = np.argsort(rows, kind="stable")
            picked = rows[order]
            block = 65_536  # fancy indexing copies: a block of rows at a time, never them all
            digests_sorted = []
            for start in range(0, len(picked), block):
                part = picked[start:start + block]
                digests_sorted.extend(row_hashes(array[part]))
                release_rows(array, int(part[0]), int(part[-1]) + 1)
            digests = [""] * len(rows)
            for k, j in enumerate(order):
                digests[int(j)] = digests_sorted[k]
        for (_, i), digest in zip(pairs, digests):
            hashes[i] = digest
            signatures[i] = signature
    if files:
        base = getattr(store, "base", None)  # joined, not resolved: the same file, far cheaper
        found = file_identities([os.path.join(base, uris[i]) if base is not None else store.locate(uris[i])
                                 for i in files], workers=workers)
        for i, (digest, signature) in zip(files, found):
            hashes[i] = digest
            signatures[i] = signature
    return hashes, signatures  # type: ignore[return-value]
