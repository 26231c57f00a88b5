"""Create a campaign (samples, splits, seed labels) or find it again to continue.

Creation is one transaction: a failure leaves nothing behind. The splits never mix copies:
byte-identical images are one sample (the first copy stands for all; see ``duplicate_of``), so
a picture cannot sit in the test split and in the pool at once, nor be labeled twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from activelabel.annotation import Annotator, OracleAnnotator
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import CampaignData, campaign_data, data_root, missing_classes
from activelabel.campaign.kinds import task_kind
from activelabel.campaign.unreadable import shown_path, warn_unreadable
from activelabel.errors import ConfigError
from activelabel.storage import Campaign, Sample, SampleProblem, SampleSplit, session_scope
from activelabel.storage.bulk import write_samples
from activelabel.storage.repository import NewAnnotation, add_annotations, get_campaign

log = logging.getLogger(__name__)

# Where a copy goes when its content also appears in another part: the stricter part wins.
_SPLIT_PRIORITY = {SampleSplit.test: 0, SampleSplit.evaluation: 1, SampleSplit.pool: 2}


def build_annotator(config: CampaignConfig, data: CampaignData) -> Annotator:
    """The campaign's annotators: the simulated oracle, or a Label Studio project.

    Label Studio's URL and key come from the environment (LABEL_STUDIO_URL,
    LABEL_STUDIO_API_KEY) at run time, never from the stored campaign settings.
    """
    if config.annotator == "labelstudio":
        from activelabel.annotation.labelstudio import LabelStudioAnnotator

        # The kind may say how its images are shown (segmentation: embedded at the training size).
        images, codec = task_kind(config).labelstudio_parts(config, data)
        return LabelStudioAnnotator.from_env(
            project_title=config.labelstudio_project,
            labels=list(data.labels),
            image_source=images if images is not None else _image_source(config, data),
            annotations_per_task=config.annotations_per_task,
            codec=codec,
        )
    if data.truth is None:
        raise ConfigError(
            f"campaign {config.name!r} has a simulated annotator but no truth to answer from; "
            "set annotator.truth to a manifest with path and label columns"
        )
    return task_kind(config).simulated_annotator(config, data)


def _image_source(config: CampaignConfig, data: CampaignData):
    """How Label Studio gets a sample's image: URL prefix, document root, or embedded."""
    from activelabel.annotation.images import LocalFilesSource, store_image_source, url_prefix_source

    if config.image_url_prefix:
        return url_prefix_source(config.image_url_prefix)
    if config.document_root:
        if data.root is None:
            raise ConfigError(
                f"--document-root serves image files, but dataset {config.dataset!r} is in memory; "
                "leave it out to embed the images"
            )
        # The project's local-files storage is the data folder (Label Studio refuses the root).
        # LocalFilesSource refuses a storage folder or an image outside the root
        # (images.outside_document_root, the check relocation shares); said here in setup's words.
        from activelabel.annotation.images import UnsafeImagePathError

        root = Path(config.document_root).expanduser().resolve()
        if Path(data.root).resolve() == root:
            raise ConfigError(
                f"annotator.document_root: the data folder {str(data.root)!r} is the document root itself, and Label "
                "Studio refuses its LOCAL_FILES_DOCUMENT_ROOT as a project's local-files storage; move the images "
                f"into a subfolder (e.g. {str(root / 'images')!r}) and point data.pool there, or leave document_root "
                "out to embed the images"
            )
        try:
            images = LocalFilesSource(config.document_root, base_dir=data.root, storage_path=data.root)
            if data.pool:
                images.local_path(data.pool[0])  # refuse a dataset outside the root up front
        except UnsafeImagePathError as error:
            raise ConfigError(
                f"annotator.document_root: the data folder {str(data.root)!r} is not under the document root "
                f"{error.root!r} (Label Studio serves only files under its LOCAL_FILES_DOCUMENT_ROOT); move the "
                "images under it, set annotator.document_root to the server's root above them, or leave "
                "document_root out to embed the images"
            ) from None
        return images
    return store_image_source(data.store)


@dataclass(frozen=True)
class Plan:
    """What a new campaign writes: each URI's split, the seed labels, and copies."""

    split_of: dict[str, SampleSplit]
    seeds: dict[str, str]  # uri -> label
    seed_source: str
    hashes: dict[str, str]
    signatures: dict[str, tuple[int, int] | None]
    duplicate_of: dict[str, str]  # copy uri -> representative uri
    problems: list[tuple[str, str]]


def split_dataset(
    size: int, config: CampaignConfig, targets: np.ndarray | None = None, *, test_given: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Built-in datasets: seeded (test, pool, initially labeled) row numbers.

    The draw depends only on ``seed``, ``size``, ``test_fraction``, ``initial_labeled`` and
    ``initial_balanced`` — never on the strategy — so every strategy of an experiment's seed
    starts from the same labeled set and is measured on the same test split. With
    ``test_given`` (the data brings its own test split, e.g. ``mnist:/dir?test=t10k``) no test
    rows are drawn: all ``size`` rows are the pool. With
    ``config.initial_balanced`` the ``targets`` (``[size]`` class indices) are needed: each
    class gets ``initial_labeled // C`` samples, and a seeded random ``initial_labeled % C``
    classes one more (Gal et al. 2017: 20 labels, 2 per digit). Raises ``ConfigError`` when a
    class has too few pool samples.
    """
    rng = np.random.default_rng([config.seed, 0])
    order = rng.permutation(size)
    n_test, n_pool, _ = _split_sizes(size, config, test_given)
    config.check_pool(n_pool)
    test, pool = np.sort(order[:n_test]), np.sort(order[n_test:])
    if not config.initial_labeled:
        initial = np.array([], dtype=np.int64)
    elif config.initial_balanced:
        if targets is None:
            raise ConfigError("a balanced initial set needs the dataset's labels")
        initial = _balanced_draw(rng, pool, np.asarray(targets)[pool], config.initial_labeled)
    else:
        initial = np.sort(rng.choice(pool, size=config.initial_labeled, replace=False))
    return test, pool, initial


def _balanced_draw(rng: np.random.Generator, pool: np.ndarray, pool_targets: np.ndarray, n: int) -> np.ndarray:
    classes = np.unique(pool_targets)
    base, extra = divmod(n, len(classes))
    more = set(rng.permutation(len(classes))[:extra].tolist())
    picked = []
    for i, c in enumerate(classes):
        members = pool[pool_targets == c]
        wanted = base + (i in more)
        if wanted > len(members):
            raise ConfigError(
                f"a balanced initial set of {n} needs {wanted} pool samples of class {c}, "
                f"but the pool holds {len(members)}; lower --initial-labeled"
            )
        picked.append(rng.choice(members, size=wanted, replace=False))
    return np.sort(np.concatenate(picked))


def plan_campaign(config: CampaignConfig, data: CampaignData) -> Plan:
    """Decide every sample's split and seed label (no database access: easy to test)."""
    if not config.uses_own_data:
        uris = data.pool
        targets = None
        if config.initial_balanced:
            index = {name: i for i, name in enumerate(data.labels)}
            targets = np.array([index[data.truth.label(u)] for u in uris], dtype=np.int64)
        test, pool, initial = split_dataset(len(data.pool), config, targets, test_given=bool(data.test))
        # A test split given with the data (MNIST t10k) is the test split, whole.
        split_of = ({u: SampleSplit.test for u in data.test}
                    | {uris[int(i)]: SampleSplit.test for i in test} | {uris[int(i)]: SampleSplit.pool for i in pool})
        seeds = {uris[int(i)]: data.truth.label(uris[int(i)]) for i in initial}
        hashes = {u: data.store.content_hash(u) for u in data.test + uris}
        signatures = {u: None for u in data.test + uris}
        uris = data.test + uris
        source = OracleAnnotator.source
    else:
        from activelabel.pipeline.identity import sample_identities

        uris = data.test + data.pool
        digests, stamps = sample_identities(data.store, uris)
        hashes = dict(zip(uris, digests))
        signatures = dict(zip(uris, stamps))
        split_of = {u: SampleSplit.pool for u in data.pool} | {u: SampleSplit.test for u in data.test}
        seeds = {u: data.given[u] for u in data.seeds}
        source = "given"
    duplicate_of = _group_copies(uris, hashes, split_of)
    problems: list[tuple[str, str]] = []
    if config.uses_own_data and config.evaluation_size:
        _draw_evaluation(config, data, split_of, seeds, duplicate_of, problems)
    for copy, first in duplicate_of.items():
        split_of[copy] = split_of[first]
        if copy in seeds and first not in seeds:
            seeds[first] = seeds[copy]
        seeds.pop(copy, None)
    return Plan(split_of, seeds, source, hashes, signatures, duplicate_of, problems)


def _group_copies(uris: list[str], hashes: dict[str, str], split_of: dict[str, SampleSplit],
                  stands: dict[str, str] | None = None) -> dict[str, str]:
    """copy -> representative for byte-identical contents; the stricter split's copy stands.

    ``stands`` (content hash -> URI of a stored representative) makes files added to a running
    campaign copies of the sample already standing for their content, whatever its split.
    """
    first: dict[str, str] = dict(stands or {})
    for uri in sorted(uris, key=lambda u: (_SPLIT_PRIORITY[split_of[u]], u)):
        first.setdefault(hashes[uri], uri)
    return {u: first[hashes[u]] for u in uris if first[hashes[u]] != u}


def _draw_evaluation(config, data, split_of, seeds, duplicate_of, problems) -> None:
    """Draw ``evaluation_size`` random, readable pool samples (not seeds) as the yardstick."""
    from activelabel.pipeline.decode import UnreadableImageError

    candidates = [u for u in data.pool if split_of[u] == SampleSplit.pool and u not in seeds
                  and u not in duplicate_of]
    order = np.random.default_rng([config.seed, 1]).permutation(len(candidates))
    wanted = config.evaluation_size
    if wanted > len(candidates) - config.batch_size:
        raise ConfigError(
            f"data.evaluation_size {wanted} leaves fewer than one batch ({config.batch_size}) of "
            f"the {len(candidates)} unlabeled pool images; lower it or add images"
        )
    taken = 0
    for i in order:
        if taken == wanted:
            break
        uri = candidates[int(i)]
        try:
            data.store.read([uri])
        except UnreadableImageError as error:
            problems.append((uri, error.reason))
            continue
        split_of[uri] = SampleSplit.evaluation
        taken += 1
    if taken < wanted:
        log.warning("data.evaluation_size asks for %d evaluation images, but only %d of the pool's images "
                    "could be read: the evaluation set has %d (the unreadable ones are recorded; see "
                    "`activelabel status`)", wanted, taken, taken)


def prepare_campaign(
    engine: Engine, config: CampaignConfig, *, relocate: bool = False,
    accept_changes: bool = False, relabel_changes: bool = False, say: Callable[[str], None] | None = None,
) -> int:
    """The campaign's id: created with samples and seed labels, or found with the same settings.

    Everything a new campaign writes is one transaction: a failure leaves nothing behind. A
    campaign on your own files is checked on every run for moved or changed files (see
    :mod:`activelabel.campaign.integrity`) before its new settings are stored. A move accepted
    with ``relocate`` updates every stored copy of the location (the settings and the dataset
    the campaign list shows) and is told to ``say`` in one line (default: the INFO log); a Label
    Studio campaign serving its files also gets its tasks still out pointed at the new place
    (:mod:`activelabel.campaign.relocation`), said on a second line.
    """
    with session_scope(engine) as session:
        existing = get_campaign(session, config.name)
        stored = CampaignConfig.from_dict(existing.config) if existing is not None else None
    if existing is not None:
        from activelabel.campaign.image_size_change import image_size_verdict

        resize = image_size_verdict(engine, existing.id, stored, config)
        config.check_compatible(stored, may_change=resize.may_change, why=resize.why)
        if config.uses_own_data:
            from activelabel.campaign.integrity import check_relocation, check_stored_files

            moved = check_relocation(stored, config, relocate=relocate)
            if moved:
                from activelabel.campaign.relocation import refuse_outside_document_root

                refuse_outside_document_root(config)  # before anything is written
            check_stored_files(engine, existing.id, config, accept=accept_changes, relabel=relabel_changes,
                               relocating=bool(moved))
            _check_stored_truth(engine, existing.id, config)
        else:
            moved = []
        carried = None
        serving = serving_change(stored, config)
        if moved or serving:
            from activelabel.campaign.relocation import carry_to_labelstudio

            # Before the new place is stored: a failure here leaves the move to be redone by a rerun.
            carried = carry_to_labelstudio(engine, existing.id, stored, config)
        with session_scope(engine) as session:
            # Only settings that keep the campaign's meaning can differ; take the new ones.
            campaign = session.get(Campaign, existing.id)
            campaign.config = config.to_dict()
            if config.uses_own_data:  # the campaign list's copy of the location (a move changes it)
                campaign.dataset = own_dataset(config)
            checked = session.scalar(select(func.count()).select_from(Sample).where(
                Sample.campaign_id == existing.id)) if moved else 0
        if resize.line:
            (say or log.info)(resize.line)
        if moved:
            (say or log.info)(f"Relocated campaign {config.name!r}: {checked} stored files found at the new "
                              f"place, all present and unchanged ({'; '.join(moved)})")
            if carried:
                (say or log.info)(carried)
        elif serving:
            (say or log.info)(f"Campaign {config.name!r}: {serving}"
                              + (f"; {carried}" if carried else "; no Label Studio task is still out"))
        return existing.id

    data = campaign_data(config)
    plan = plan_campaign(config, data)
    unreadable = {uri for uri, _ in plan.problems}
    check_truth_covers(config, data, [u for u, split in plan.split_of.items() if split != SampleSplit.test
                                      and u not in plan.seeds and u not in plan.duplicate_of and u not in unreadable],
                       then="nothing was written")
    _warn_missing_classes(config, data, plan)
    try:
        return _create_campaign(engine, config, data, plan)
    except IntegrityError:
        # Another process created the same campaign a moment ago: use theirs.
        return prepare_campaign(engine, config)


def serving_change(stored: CampaignConfig, config: CampaignConfig) -> str | None:
    """How the way Label Studio gets the images changed since the campaign last ran (a corrected
    ``annotator.document_root`` or ``image_url_prefix``, or either one added or left out), in
    words; None when it did not. The tasks still out then get the new image reference, as after
    a relocation (trial 15 F2: a wrong root, once corrected, left the tasks sent with it broken).
    The prefix itself is never shown: it may hold a token."""
    if config.annotator != "labelstudio":
        return None

    def root(c: CampaignConfig) -> str | None:
        return str(Path(c.document_root).expanduser().resolve()) if c.document_root else None

    if root(stored) != root(config):
        before, after = root(stored), root(config)
        return (f"annotator.document_root changed ({before or 'unset'} -> {after or 'unset'})")
    if (stored.image_url_prefix or None) != (config.image_url_prefix or None):
        return "annotator.image_url_prefix changed"
    return None


def check_truth_covers(config: CampaignConfig, data: CampaignData, uris: Iterable[str], *, then: str) -> None:
    """A simulated annotator on your own images must be able to answer every image it may be
    sent (``uris``: unlabeled pool images, copies left out): each needs a row in the
    ``annotator.truth`` manifest (classification) or a mask file in the ``annotator.truth``
    folder (segmentation: one stat call each). Checked before the images are written (campaign
    creation, new files joining, reopening), so a gap is one error naming the first few, not a
    round failed mid-way. ``then``: what the error adds about what was (not) done."""
    if not config.uses_own_data or config.annotator != "simulated" or data.truth is None:
        return
    from activelabel.pipeline.masks import mask_path_for

    if data.truth_masks is not None:
        missing = [str(mask_path_for(u, data.truth_masks.folder)) for u in uris if u not in data.truth_masks]
        what = (f"have no true mask in the annotator.truth folder {data.truth_masks.folder}", "missing",
                "add the masks (same relative path as the image, suffix .png)")
    else:
        missing = [u for u in uris if u not in data.truth.by_uri]
        what = (f"have no true label in the annotator.truth manifest {config.truth}", "without a row",
                "add their rows to the manifest")
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ConfigError(
            f"annotator.truth: {len(missing)} pool image(s) {what[0]}, so the simulated annotator could not "
            f"answer them ({what[1]}: {', '.join(missing[:3])}{more}); {what[2]}, or remove the images from "
            f"data.pool; {then}"
        )


def _check_stored_truth(engine: Engine, campaign_id: int, config: CampaignConfig) -> None:
    """:func:`check_truth_covers` for a stored campaign being opened: its unlabeled, readable
    pool and evaluation samples (copies left out), before any round goes on."""
    if config.annotator != "simulated" or not config.truth:
        return
    from sqlalchemy import exists

    from activelabel.storage import Annotation, AnnotationStatus

    with session_scope(engine) as session:
        uris = list(session.scalars(select(Sample.uri).where(
            Sample.campaign_id == campaign_id, Sample.split != SampleSplit.test, Sample.duplicate_of.is_(None),
            ~exists().where(Annotation.sample_id == Sample.id, Annotation.status == AnnotationStatus.accepted),
            ~exists().where(SampleProblem.campaign_id == campaign_id, SampleProblem.uri == Sample.uri),
        )))
    check_truth_covers(config, campaign_data(config), uris, then="no round was started")


def own_dataset(config: CampaignConfig) -> str:
    """What the campaign list shows as a campaign's dataset on your own files: ``files:<data root>``
    (the folder sample URIs are relative to), stored with the campaign and updated when it moves."""
    return f"files:{data_root(config.data_pool)}"


def _warn_missing_classes(config: CampaignConfig, data: CampaignData, plan: Plan) -> None:
    if not plan.seeds or not set(plan.seeds.values()) <= set(data.labels):
        return  # no seeds, or seeds that are masks (segmentation): no class can be missing
    missing = missing_classes(data.labels, plan.seeds.values())
    if missing:
        log.warning(
            "The seed labels of campaign %r cover %d of %d classes; missing: %s. The first model "
            "cannot predict them until annotators label some.",
            config.name, len(data.labels) - len(missing), len(data.labels), ", ".join(missing),
        )


def _create_campaign(engine: Engine, config: CampaignConfig, data: CampaignData, plan: Plan) -> int:
    with session_scope(engine) as session:
        campaign = Campaign(
            name=config.name,
            task_kind=config.task,
            labels=list(data.labels),
            strategy=config.strategy,
            dataset=config.dataset if not config.uses_own_data else own_dataset(config),
            config=config.to_dict(),
        )
        session.add(campaign)
        session.flush()
        ids = write_sample_rows(session, campaign.id, plan.split_of, plan.hashes, plan.signatures,
                                plan.duplicate_of)
        kind = task_kind(config)
        add_annotations(session, campaign.id, [
            NewAnnotation(sample_id=ids[uri], annotator=plan.seed_source, label=label,
                          source=plan.seed_source, external_id=f"seed-{ids[uri]}", mask=kind.truth_mask(data, uri))
            for uri, label in plan.seeds.items()
        ])
        session.add_all(SampleProblem(campaign_id=campaign.id, uri=u, reason=r) for u, r in plan.problems)
        counts = {s: sum(v == s for v in plan.split_of.values()) for s in SampleSplit}
        log.info(
            "Created campaign %r: %d pool samples (%d labeled to start), %d test, %d evaluation, "
            "%d duplicate copies", config.name, counts[SampleSplit.pool], len(plan.seeds),
            counts[SampleSplit.test], counts[SampleSplit.evaluation], len(plan.duplicate_of),
        )
        warn_unreadable(log, f"campaign {config.name!r}", plan.problems, shown=shown_path(data.root))
        return campaign.id


def write_sample_rows(
    session, campaign_id: int, split_of: dict[str, SampleSplit], hashes: dict[str, str],
    signatures: dict[str, tuple[int, int] | None], duplicate_of: dict[str, str],
) -> dict[str, int]:
    """Insert a sample per URI of ``split_of`` (its hash and ``(size, mtime_ns)`` signature)
    and point each copy of ``duplicate_of`` at its representative, which may be a stored
    sample; in the session's transaction. Returns URI -> sample id for the whole campaign.

    Raises :class:`sqlalchemy.exc.IntegrityError` on a URI the campaign already holds.
    """
    # Bulk: a million samples in seconds (COPY on PostgreSQL, executemany on SQLite).
    write_samples(session, [
        (campaign_id, uri, hashes[uri], split.value, *(signatures.get(uri) or (None, None)))
        for uri, split in split_of.items()
    ])
    ids = dict(session.execute(select(Sample.uri, Sample.id).where(Sample.campaign_id == campaign_id)).all())
    if duplicate_of:  # one executemany UPDATE by primary key
        session.execute(update(Sample), [{"id": ids[copy], "duplicate_of": ids[first]}
                                         for copy, first in duplicate_of.items()])
    return ids


def check_dataset(config: CampaignConfig) -> None:
    """Load the data and the model's weights file; check the campaign fits its pool. Before
    anything is written, so a mistake costs nothing."""
    from activelabel.campaign.model_settings import check_model

    data = campaign_data(config)
    check_model(config, data.in_channels, len(data.labels), getattr(data.store, "size", None))
    if config.uses_own_data:
        free = len(data.pool) - len(data.seeds) - config.evaluation_size
        if free < config.batch_size:
            raise ConfigError(
                f"data.pool holds {len(data.pool)} images; after {len(data.seeds)} seed labels and "
                f"{config.evaluation_size} evaluation samples fewer than one batch "
                f"({config.batch_size}) remain to select from"
            )
        return
    _, pool, _ = _split_sizes(len(data.pool), config, bool(data.test))
    config.check_pool(pool)


def _split_sizes(size: int, config: CampaignConfig, test_given: bool = False) -> tuple[int, int, int]:
    n_test = 0 if test_given else max(1, round(size * config.test_fraction))
    return n_test, size - n_test, config.initial_labeled


def check_annotator(config: CampaignConfig) -> None:
    """Reach the annotation backend before any round starts (fail fast on URL or token)."""
    if config.annotator != "labelstudio":
        return
    annotator = build_annotator(config, campaign_data(config))
    annotator.ensure_project()
