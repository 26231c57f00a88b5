"""A campaign's data: where pixels come from, what is already known, and what the truth is.

Three things that today's built-in datasets blur together are kept apart (DESIGN "Data"):

- *pixels*: an :class:`~activelabel.pipeline.store.ImageStore` reads any sample by URI,
  lazily (files) or from memory (digits, MNIST);
- *given labels*: labels the user handed over with the data (a labeled test set, seed labels)
  — never the pool's truth;
- *truth*: what a simulated annotator answers (``annotator.truth``, or a built-in dataset's
  own labels). A campaign on unlabeled images has none, and needs none.

Sample URIs of file campaigns are paths relative to the *data root* (the pool folder, or the
pool manifest's folder), so the same file has the same URI however its folder was spelled,
and a moved data folder keeps its URIs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np

from activelabel.annotation.simulated import Truth
from activelabel.campaign.config import CampaignConfig
from activelabel.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class CampaignData:
    """Everything a round reads about the campaign's data (built once per process)."""

    labels: list[str]
    store: object  # ImageStore
    # Folder the URIs are relative to (file campaigns and image folders); None: in memory.
    root: Path | None
    # Labels handed over with the data: the test split's labels and seed labels, by URI.
    given: dict[str, str]
    truth: Truth | None
    # Creation only: the URIs of each part, in a stable order.
    pool: list[str]
    test: list[str]
    seeds: list[str]
    # (uri, reason) of files that could not be listed or read.
    problems: list[tuple[str, str]] = field(default_factory=list)
    in_channels: int = 1
    # Segmentation data: each sample's true mask ``[H, W]`` (class indices, 255 = ignore), by
    # URI. Test masks are the yardstick, pool masks what a simulated annotator paints. None for
    # class labels (``given`` and ``truth`` then hold the class names).
    given_masks: dict[str, np.ndarray] | None = None
    # Segmentation on your own files with a simulated annotator: the pool's true masks
    # (``annotator.truth``, a folder of masks), read when asked; never a yardstick.
    truth_masks: object | None = None  # Mapping[str, np.ndarray]

    def given_label(self, uri: str) -> str:
        try:
            return self.given[uri]
        except KeyError:
            raise ConfigError(f"sample {uri!r} has no given label") from None


def campaign_data(config: CampaignConfig) -> CampaignData:
    """The campaign's data (cached per process: rounds read it often)."""
    if config.task == "segmentation" and config.uses_own_data:
        return _cached_masks(config.data_pool, config.data_labeled, config.labeled_masks, config.data_test,
                             config.test_masks, config.labels, config.truth, config.image_size, config.channels,
                             config.ignore_index, config.palette)
    return _cached(config.dataset, config.data_pool, config.data_labeled, config.data_test,
                   config.labels, config.truth, config.image_size, config.channels)


def clear_cache() -> None:
    _cached.cache_clear()
    _cached_masks.cache_clear()


@lru_cache(maxsize=4)
def _cached(dataset, pool, labeled, test, labels, truth, image_size, channels) -> CampaignData:
    if dataset != "files":
        return _builtin(dataset)
    return _from_files(pool, labeled, test, labels, truth, image_size, channels)


def _builtin(spec: str) -> CampaignData:
    if spec.partition("?")[0] == "shapes":
        return _shapes(spec)
    from activelabel.pipeline.datasets import load_dataset
    from activelabel.pipeline.store import ArrayStore

    dataset = load_dataset(spec)
    names = list(dataset.labels)
    given = {uri: names[int(t)] for uri, t in zip(dataset.uris, dataset.targets)}
    # A test split given with the data (mnist:...?test=t10k) is the test split; otherwise every
    # image is in ``pool`` and the campaign draws a seeded test_fraction from it.
    test = set(dataset.test_uris)
    return CampaignData(
        labels=names,
        store=ArrayStore(dataset.images, list(dataset.uris)),
        root=dataset.root,
        given=given,
        truth=Truth(tuple(names), given),
        pool=[u for u in dataset.uris if u not in test],
        test=list(dataset.test_uris),
        seeds=[],
        problems=[(p, "unreadable") for p in dataset.problems],
        in_channels=int(dataset.images.shape[1]),
    )


SHAPES_DEFAULTS = {"n": 300, "size": 32, "seed": 0}


def _shapes(spec: str) -> CampaignData:
    """The generated segmentation dataset ``shapes[?n=300&size=32&seed=0]`` (pipeline.shapes),
    in memory. Every sample is labeled ``MASK_LABEL``; the masks are in ``given_masks``."""
    from activelabel.annotation.base import MASK_LABEL
    from activelabel.pipeline.shapes import make_shapes
    from activelabel.pipeline.store import ArrayStore

    options = dict(SHAPES_DEFAULTS)
    for key, values in parse_qs(spec.partition("?")[2]).items():
        if key not in options:
            raise ConfigError(f"dataset {spec!r}: unknown option {key!r}; known: {', '.join(options)}")
        try:
            options[key] = int(values[0])
        except ValueError:
            raise ConfigError(f"dataset {spec!r}: {key} must be a whole number, got {values[0]!r}") from None
    try:
        data = make_shapes(options["n"], seed=options["seed"], size=options["size"])
    except ValueError as error:
        raise ConfigError(f"dataset {spec!r}: {error}") from None
    uris = list(data.uris)
    marks = {uri: MASK_LABEL for uri in uris}
    return CampaignData(
        labels=list(data.labels),
        store=ArrayStore(data.images, uris),
        root=None,
        given=marks,
        truth=Truth((MASK_LABEL,), marks),
        pool=uris,
        test=[],
        seeds=[],
        in_channels=int(data.images.shape[1]),
        given_masks={uri: mask.astype(np.uint8) for uri, mask in zip(uris, data.masks)},
    )


def data_root(pool: str) -> Path:
    """The folder sample URIs are relative to: the pool folder, or the pool manifest's folder."""
    path = Path(pool)
    return path if path.is_dir() else path.parent


class PoolListings:
    """The pool listings of one round start, shared by every step that needs one.

    Before a round, the stop check (:func:`~activelabel.campaign.stopping.pool_exhausted`),
    the join of new files (:func:`~activelabel.campaign.growth.join_before_round`) and the
    refresh of the cached :class:`CampaignData` each need the pool folder's listing; a walk of
    a large folder takes seconds, so within :func:`one_pool_listing` it is walked once and the
    three read the same list. ``walks`` counts the walks made (for tests and benchmarks).
    """

    def __init__(self) -> None:
        self._listed: dict[tuple[str, tuple[str, ...] | None], list[str]] = {}
        self.walks = 0

    def listing(self, pool: str, labels) -> list[str]:
        key = (pool, tuple(labels) if labels is not None else None)
        if key not in self._listed:
            self._listed[key] = _walk_pool(pool, labels)
            self.walks += 1
        return list(self._listed[key])  # a copy: no reader can change another's list


_round_listings: ContextVar[PoolListings | None] = ContextVar("activelabel_pool_listings", default=None)


@contextmanager
def one_pool_listing() -> Iterator[PoolListings]:
    """Within this block the pool source is listed at most once (per pool and label set).

    Opened around one round's start (``campaign_flow``: the stop check and the round;
    ``steps.start_round``: the join and the data refresh). Nested blocks share the outer one.
    Scoped by a context variable and dropped on exit: nothing outlives the round, so a
    later round, another campaign or another test lists the folder afresh.
    """
    current = _round_listings.get()
    if current is not None:
        yield current
        return
    token = _round_listings.set(PoolListings())
    try:
        yield _round_listings.get()
    finally:
        _round_listings.reset(token)


def _list_pool(pool: str, labels) -> list[str]:
    """The URIs a pool folder or manifest lists now (relative to the data root), in a stable
    order; inside :func:`one_pool_listing`, the block's one listing. Raises
    ``DataSourceError`` naming ``data.pool`` when it is gone or lists nothing."""
    shared = _round_listings.get()
    return shared.listing(pool, labels) if shared is not None else _walk_pool(pool, labels)


def _walk_pool(pool: str, labels) -> list[str]:
    """The one function that reads the pool source (a directory walk or the manifest)."""
    from activelabel.pipeline.sources import load_source

    return [r.uri for r in load_source(pool, key="data.pool", labels=labels, labeled=False, base=data_root(pool))]


def list_pool_files(config: CampaignConfig) -> list[str] | None:
    """The URIs ``data.pool`` lists *now*, read afresh (never cached across rounds; inside
    :func:`one_pool_listing`, the round start's one listing): what a run compares with the
    stored samples to find files added since (:mod:`activelabel.campaign.growth`). None
    for a ``.npy`` pool, whose rows are fixed when the campaign is created."""
    from activelabel.pipeline.memmap import is_npy

    if not config.uses_own_data or is_npy(config.data_pool):
        return None
    return _list_pool(config.data_pool, config.labels if config.task != "segmentation" else None)


def _from_files(pool, labeled, test, labels, truth, image_size, channels) -> CampaignData:
    from activelabel.pipeline.memmap import MemmapStore, is_npy, open_array, parse_row_uri, row_uris
    from activelabel.pipeline.sources import load_source, read_manifest, uri_for
    from activelabel.pipeline.store import FileStore

    root = data_root(pool)
    if is_npy(pool):  # one memory-mapped array: a row per sample, nothing listed on disk
        listed = row_uris(uri_for(pool, root), len(open_array(pool, key="data.pool")))
    else:
        listed = _list_pool(pool, labels)
    seed_records = load_source(labeled, key="data.labeled", labels=labels, labeled=True, base=root) if labeled else []
    test_records = load_source(test, key="data.test", labels=labels, labeled=True, base=root) if test else []
    names = list(labels) if labels else sorted({r.label for r in seed_records if r.label})
    if not names:
        raise ConfigError("data.labels is required: no label set given and data.labeled holds no labels")
    _check_labels(names, seed_records, "data.labeled")
    if labeled and Path(labeled).is_dir():
        from activelabel.pipeline.sources import empty_classes

        for name in empty_classes(labeled, seed_records, key="data.labeled"):
            log.warning("data.labeled: class folder %s has no image", Path(labeled) / name)
    _check_labels(names, test_records, "data.test")

    # Every source lists URIs relative to the data root (each path resolved once, when listed).
    test_uris = [r.uri for r in test_records]
    seed_uris = [r.uri for r in seed_records]
    given = {u: r.label for u, r in zip(test_uris + seed_uris, test_records + seed_records) if r.label}
    in_test = set(test_uris)
    pool_uris = [u for u in listed if u not in in_test]
    # Seed images outside the pool folder join the pool (labeled already).
    known = set(pool_uris)
    pool_uris += [u for u in seed_uris if u not in known and u not in in_test]
    truth_map = None
    if truth:
        records = read_manifest(truth, key="annotator.truth", labels=names, require_labels=True, base=root)
        truth_map = Truth(tuple(names), {r.uri: r.label for r in records})
    if not pool_uris:
        raise ConfigError(f"data.pool: no image found in {pool}")
    rows = is_npy(pool) or any(parse_row_uri(u) for u in test_uris + seed_uris)
    store = (MemmapStore if rows else FileStore)(root, size=image_size, channels=channels)
    return CampaignData(
        labels=names,
        store=store,
        root=root,
        given=given,
        truth=truth_map,
        pool=pool_uris,
        test=test_uris,
        seeds=[u for u in seed_uris if u not in in_test],
        in_channels=channels,
    )


def _internal_ignore(mask: np.ndarray, ignore_index: int) -> np.ndarray:
    """uint8 mask with the user's ``ignore_index`` as the campaign's 255 (``pipeline.masks.IGNORE_INDEX``):
    training, majority votes, metrics and exports all read 255 as "no label here"."""
    out = np.asarray(mask).astype(np.uint8)
    out[np.asarray(mask) == ignore_index] = 255
    return out


class MaskFolder:
    """True masks of pool images, read when asked: ``uri`` -> ``folder/<uri with suffix .png>``,
    one class index per pixel (or colours through ``palette``), resized to ``size`` by nearest
    neighbour. What a simulated annotator paints on your own images; never a yardstick."""

    def __init__(self, folder: str, *, num_classes: int, size: int, ignore_index: int, palette) -> None:
        self.folder = Path(folder)
        self.num_classes, self.size, self.ignore_index, self.palette = num_classes, size, ignore_index, palette

    def __contains__(self, uri: object) -> bool:
        from activelabel.pipeline.masks import mask_path_for

        return isinstance(uri, str) and mask_path_for(uri, self.folder).is_file()

    def __getitem__(self, uri: str) -> np.ndarray:
        from activelabel.pipeline.masks import mask_path_for, read_mask, resize_mask

        mask = read_mask(mask_path_for(uri, self.folder), num_classes=self.num_classes,
                         ignore_index=self.ignore_index, palette=self.palette)
        return _internal_ignore(resize_mask(mask, self.size), self.ignore_index)


@lru_cache(maxsize=4)
def _cached_masks(pool, labeled, labeled_masks, test, test_masks, labels, truth, image_size, channels,
                  ignore_index, palette) -> CampaignData:
    return _mask_files(pool, labeled, labeled_masks, test, test_masks, labels, truth, image_size, channels,
                       ignore_index, palette)


def _mask_files(pool, labeled, labeled_masks, test, test_masks, labels, truth, image_size, channels,
                ignore_index, palette) -> CampaignData:
    """Segmentation on your own folders: unlabeled pool images, and seed/test images with a PNG
    mask each (``pipeline.masks``). URIs are relative to the data root, as for class labels;
    the seed and test masks are read once (they are few) and resized to ``image_size``."""
    from activelabel.annotation.base import MASK_LABEL
    from activelabel.pipeline.masks import read_segmentation_folder
    from activelabel.pipeline.sources import uri_for
    from activelabel.pipeline.store import FileStore

    root = data_root(pool)
    listed = _list_pool(pool, None)
    colours = {tuple(entry[:3]): entry[3] for entry in palette} if palette else None

    def masked(images: str | None, masks: str | None, key: str) -> dict[str, np.ndarray]:
        if images is None:
            return {}
        if not Path(images).is_dir():
            raise ConfigError(f"{key}: {images} is not a folder; segmentation reads a folder of images "
                              "with a folder of masks beside it")
        read = read_segmentation_folder(images, masks, labels=list(labels), size=image_size, channels=channels,
                                        ignore_index=ignore_index, palette=colours, require_masks=True, name=key)
        return {uri_for(Path(images) / uri, root): _internal_ignore(mask, ignore_index)
                for uri, mask in zip(read.uris, read.masks)}

    seed_masks = masked(labeled, labeled_masks, "data.labeled")
    test_masks_by_uri = masked(test, test_masks, "data.test")
    in_test = set(test_masks_by_uri)
    pool_uris = [u for u in listed if u not in in_test]
    known = set(pool_uris)
    pool_uris += [u for u in seed_masks if u not in known and u not in in_test]
    if not pool_uris:
        raise ConfigError(f"data.pool: no image found in {pool}")
    truth_masks = None
    truth_map = None
    if truth:
        if not Path(truth).is_dir():
            raise ConfigError(f"annotator.truth: {truth} is not a folder of the pool's true masks")
        truth_masks = MaskFolder(truth, num_classes=len(labels), size=image_size, ignore_index=ignore_index,
                                 palette=colours)
        truth_map = Truth((MASK_LABEL,), {u: MASK_LABEL for u in pool_uris})
    given_masks = {**seed_masks, **test_masks_by_uri}
    return CampaignData(
        labels=list(labels),
        store=FileStore(root, size=image_size, channels=channels),
        root=root,
        given={u: MASK_LABEL for u in given_masks},
        truth=truth_map,
        pool=pool_uris,
        test=list(test_masks_by_uri),
        seeds=[u for u in seed_masks if u not in in_test],
        in_channels=channels,
        given_masks=given_masks,
        truth_masks=truth_masks,
    )


def _check_labels(names: list[str], records, key: str) -> None:
    allowed = set(names)
    for record in records:
        if record.label is not None and record.label not in allowed:
            raise ConfigError(
                f"{key}: {record.path} has label {record.label!r}, which is not in the label set "
                f"{names}; add it to data.labels or fix the label"
            )


def missing_classes(names: list[str], labels_present) -> list[str]:
    """Label-set entries that no given label uses (a seed set covering 2 of 10 classes)."""
    present = set(labels_present)
    return [n for n in names if n not in present]
