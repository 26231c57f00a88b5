"""Data that changed or moved between runs of a campaign on your own files.

- **Moved.** Sample URIs are relative to the data root, so a moved folder keeps them. A run
  whose data path differs from the stored one (after resolving ``..``, trailing ``/`` and
  symlinks, which are not moves) continues only with ``--relocate``, and only when every
  stored file is found at the new place with the same content hash. A Label Studio campaign
  that serves its files has its tasks still out pointed at the new place
  (:mod:`activelabel.campaign.relocation`).
- **Changed.** A file overwritten since it was hashed is found cheaply: size and mtime first,
  then the hash of those that differ. An unlabeled changed file is simply re-hashed. A
  *labeled* changed file stops the run until the user says how: ``--accept-changes`` keeps
  its label (the new content is hashed), ``--relabel-changes`` withdraws its labels (kept in
  the database as rejected, with the reason) so it returns to the pool. In a Label Studio
  campaign with embedded images the sample's task gets the new image and loses its answers
  there (:func:`relabel_in_labelstudio`), so it stays out with the annotators in the same task;
  with served images (``image_url_prefix``/``document_root``) the task shows the new file
  already and the run refuses, asking for a review there.
- **Gone.** An unlabeled image removed from the folder is recorded as unreadable (never
  scored or selected) and the run goes on; put back, it is checked like any file and returns
  to the pool. A labeled one stops the run until it is restored.
  Images *added* to the folder join the pool (:mod:`activelabel.campaign.growth`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, delete, select, update

from activelabel.campaign.config import CampaignConfig
from activelabel.errors import CampaignStateError, DatasetError
from activelabel.storage import Annotation, AnnotationStatus, Sample, SampleProblem, Selection, session_scope
from activelabel.storage.repository import WITHDRAWN_MARK, record_problems, resolved_labels

log = logging.getLogger(__name__)
_DATA_KEYS = (("data_pool", "data.pool"), ("data_labeled", "data.labeled"), ("data_test", "data.test"))
#: The unreadable-file reason of an unlabeled image removed from the folder (cleared when it is back).
GONE_REASON = "file is gone from the data folder (removed or renamed)"
#: Unreadable-file reasons that only say the file was not there (the reader's, ``pipeline.decode``,
#: and the pre-round check's): cleared once the file is back, so a restored image is no longer
#: counted unreadable.
MISSING_REASONS = (GONE_REASON, "file does not exist")
#: The reason stored on an answer withdrawn by ``--relabel-changes`` (its image changed after it
#: was labeled); readers match on it with ``startswith`` (``campaign.summary.short_of_answers``).
WITHDRAWN_REASON = "image changed after it was labeled"


class DataChangedError(CampaignStateError):
    """Labeled images changed since they were labeled; the user must say how to go on."""


@dataclass(frozen=True)
class Changed:
    sample_id: int
    uri: str
    path: Path
    content_hash: str | None  # None: the file is gone
    signature: tuple[int, int] | None
    labeled: bool  # resolved, or holding at least one accepted answer (partly answered)
    partial: bool = False  # answered, but short of annotations_per_task answers


def check_relocation(stored: CampaignConfig, new: CampaignConfig, *, relocate: bool) -> list[str]:
    """Refuse a changed data path unless ``relocate`` (the files are then checked by hash).
    Returns what moved (``data.pool /old -> /new``, one entry per data key), empty when nothing did."""
    moved = [
        f"{key} {getattr(stored, field)} -> {getattr(new, field)}"
        for field, key in _DATA_KEYS
        if getattr(stored, field) != getattr(new, field)
    ]
    if moved and not relocate:
        raise CampaignStateError(
            f"campaign {new.name!r}: the data moved ({'; '.join(moved)}); rerun with --relocate to "
            "check every stored file at the new place and continue"
        )
    return moved


#: Paths of a campaign file that name the campaign's data (checked for the moved-folder hint).
_PATH_KEYS = _DATA_KEYS + (("truth", "annotator.truth"), ("labeled_masks", "segmentation.labeled_masks"),
                           ("test_masks", "segmentation.test_masks"))


def moved_data_hint(config: CampaignConfig, database_url: str) -> str | None:
    """The advice for a data path that does not exist when the campaign is already stored: the
    folder probably moved, and ``--relocate`` is how a moved campaign goes on. None for a new
    campaign (a typo, the reader's own error says enough), a database that does not exist or
    cannot be read (nothing is created or migrated here), or when every path exists.

    Called on the error path of the data check, before the database is opened for the run.
    """
    if not config.uses_own_data:
        return None
    missing = [key for field, key in _PATH_KEYS
               if getattr(config, field) and not Path(getattr(config, field)).expanduser().exists()]
    if not missing:
        return None
    stored = _stored_config(database_url, config.name)
    if stored is None:
        return None
    was = "" if stored.data_pool == config.data_pool else f" (its stored data.pool is {stored.data_pool})"
    return (f"campaign {config.name!r} exists already{was}: if its data moved, edit {', '.join(missing)} "
            "to the new place (and any manifest naming the old one) and rerun with --relocate (every stored "
            "file is then checked at the new place)")


def _stored_config(database_url: str, name: str) -> CampaignConfig | None:
    """The stored settings of campaign ``name``, read without creating or migrating anything;
    None when there is no such database or campaign, or it cannot be read."""
    from sqlalchemy.engine import make_url

    from activelabel.storage import Campaign
    from activelabel.storage.database import open_engine

    try:
        parsed = make_url(database_url)
        path = parsed.database
        if parsed.get_backend_name() == "sqlite" and (not path or path == ":memory:" or not Path(path).exists()):
            return None
        engine = open_engine(database_url, create_schema=False)
    except Exception:  # only a hint: the data error it would add to is the one to show
        return None
    try:
        with engine.connect() as connection:
            stored = connection.execute(select(Campaign.config).where(Campaign.name == name)).scalar()
        return CampaignConfig.from_dict(stored) if stored is not None else None
    except Exception:  # an older schema, a database of something else: no hint
        return None
    finally:
        engine.dispose()


def find_changes(engine: Engine, campaign_id: int, store, config: CampaignConfig) -> list[Changed]:
    """Stored samples whose file is gone or whose content differs from the stored hash."""
    from activelabel.pipeline.sources import file_sha256, file_signature

    with session_scope(engine) as session:
        samples = list(session.scalars(select(Sample).where(Sample.campaign_id == campaign_id)))
        resolved = set(resolved_labels(session, campaign_id, config.annotations_per_task))
        # A partly answered sample (1 of 2 answers in) counts as labeled here: its answer was given
        # on the old picture, so it needs the same decision as a resolved one.
        answered = set(session.scalars(select(Annotation.sample_id).where(
            Annotation.campaign_id == campaign_id, Annotation.status == AnnotationStatus.accepted).distinct()))
        labeled = resolved | answered
        gone = dict(session.execute(select(SampleProblem.uri, SampleProblem.id).where(
            SampleProblem.campaign_id == campaign_id, SampleProblem.reason.in_(MISSING_REASONS))).all())
    changed = []
    back: list[int] = []
    touched: list[tuple[int, tuple[int, int]]] = []
    for sample in samples:
        path = store.locate(sample.uri)
        try:
            # A row of a .npy array has no file of its own: the array's signature, the row's hash.
            signature = file_signature(path) if path is not None else store.signature(sample.uri)
        except OSError:
            changed.append(Changed(sample.id, sample.uri, path, None, None, sample.id in labeled))
            continue
        if sample.uri in gone:  # a removed image is back: checked below like any file, then scored again
            back.append(gone[sample.uri])
        if signature == (sample.size_bytes, sample.mtime_ns):
            continue
        try:
            digest = file_sha256(path) if path is not None else store.content_hash(sample.uri)
        except DatasetError:  # the array lost that row, or is no longer an array we read
            changed.append(Changed(sample.id, sample.uri, path, None, None, sample.id in labeled))
            continue
        if digest != sample.content_hash:
            changed.append(Changed(sample.id, sample.uri, path, digest, signature, sample.id in labeled,
                                   sample.id in labeled and sample.id not in resolved))
        else:  # touched, not changed: remember the new signature to stay cheap next time
            touched.append((sample.id, signature))
    if touched or back:
        with session_scope(engine) as session:
            for sample_id, (size, mtime) in touched:
                session.execute(update(Sample).where(Sample.id == sample_id).values(size_bytes=size, mtime_ns=mtime))
            session.execute(delete(SampleProblem).where(SampleProblem.id.in_(back)))
    return changed


def check_stored_files(
    engine: Engine, campaign_id: int, config: CampaignConfig, *, accept: bool = False, relabel: bool = False,
    relocating: bool = False, rerun: str = "rerun",
) -> None:
    """The one check of a campaign's stored files before its rounds go on: ``run`` calls it when
    it opens the campaign (with the user's ``--accept-changes`` / ``--relabel-changes`` /
    ``--relocate``), and :func:`activelabel.campaign.steps.start_round` before every round it
    starts or reopens (``run``'s later rounds, ``watch``, ``serve``'s ticks, ``resume``), so a
    loop that keeps rounds going can never skip what ``run`` refuses.

    Unlabeled changed files are re-hashed (and shown anew in their waiting Label Studio task),
    unlabeled gone ones recorded as unreadable, restored ones cleared. Raises
    :class:`DataChangedError` for labeled images changed since they were labeled and
    :class:`~activelabel.errors.CampaignStateError` for labeled images that are gone, naming
    the files and what to do; ``rerun`` is how the advice starts ("rerun" for ``run`` itself;
    the round start says to run ``activelabel run`` on the campaign file). Nothing is changed
    for the refused samples and no round is started. No-op for built-in datasets.
    """
    if not config.uses_own_data:
        return
    from activelabel.campaign.data import campaign_data

    changes = find_changes(engine, campaign_id, campaign_data(config).store, config)
    reconcile_changes(engine, campaign_id, changes, accept=accept, relabel=relabel, relocating=relocating,
                      annotator=config.annotator, rerun=rerun)


def reconcile_changes(
    engine: Engine, campaign_id: int, changes: list[Changed], *, accept: bool, relabel: bool, relocating: bool,
    annotator: str = "simulated", rerun: str = "rerun",
) -> None:
    """Apply the user's decision about changed files, or raise naming them and the choices
    (``rerun``: how the advice starts, see :func:`check_stored_files`)."""
    missing = [c for c in changes if c.content_hash is None]
    # An unlabeled image removed from the folder is simply gone: recorded as unreadable (never
    # scored or selected), the run goes on. A labeled one, or any file after a move, stops it.
    gone = [] if relocating else [c for c in missing if not c.labeled]
    missing = [c for c in missing if c not in gone]
    if missing:
        where = "at the new place" if relocating else "any more"
        raise CampaignStateError(
            f"{len(missing)} stored image(s){'' if relocating else ' with labels'} are not found {where} "
            f"({_named(missing)}); restore them, or point the campaign file's data paths at the folder "
            "that holds them" + ("" if relocating else "; no round was started and nothing was changed")
        )
    if gone:
        _record_gone(engine, campaign_id, gone)
    changes = [c for c in changes if c.content_hash is not None]
    if relocating and changes:
        raise CampaignStateError(
            f"--relocate: {len(changes)} file(s) at the new place differ from the stored content "
            f"(e.g. {changes[0].path}); this is not the same data"
        )
    labeled = [c for c in changes if c.labeled]
    in_tasks: set[int] = set()
    if labeled and relabel and annotator == "labelstudio":
        # Embedded images: the task holds the old picture; it gets the new one (and loses its
        # answers there, kept here as history). Served files: the task shows the new one already.
        in_tasks = relabel_in_labelstudio(engine, campaign_id, labeled)
    waiting = [c for c in changes if not c.labeled]
    if waiting and annotator == "labelstudio" and (accept or relabel or not labeled):
        # Sent but not answered yet: its embedded task must show the new picture before anyone
        # answers it. Nothing to decide (no answer is lost), so this needs no option.
        relabel_in_labelstudio(engine, campaign_id, waiting, served_ok=True)
    if labeled and not (accept or relabel):
        partial = sum(c.partial for c in labeled)
        if partial == len(labeled):  # none is labeled yet: say what they are
            what = (f"{partial} partly answered image(s) changed since they were answered (the answers in were "
                    "given on the old image)")
        else:
            what = f"{len(labeled)} labeled image(s) changed since they were labeled" + (
                f" ({partial} of them partly answered: the answers in were given on the old image)" if partial else "")
        raise DataChangedError(
            what + f" ({_named(labeled)}); "
            f"{rerun} with --accept-changes to keep their labels, or --relabel-changes to send them "
            "to the annotators again; no round was started and nothing was changed"
        )
    with session_scope(engine) as session:
        for change in changes:
            session.execute(update(Sample).where(Sample.id == change.sample_id).values(
                content_hash=change.content_hash, size_bytes=change.signature[0], mtime_ns=change.signature[1],
            ))
        if relabel and labeled:
            ids = [c.sample_id for c in labeled]
            # Back to the pool: the old answers stay (rejected, with the reason); the selection
            # that sent it out is withdrawn so a strategy may pick it again. A sample whose Label
            # Studio task now shows the new image keeps its selection: it is out with the
            # annotators again, in the same task (so a rerun pushes nothing new).
            session.execute(delete(Selection).where(Selection.sample_id.in_([i for i in ids if i not in in_tasks])))
            # Skips too: a skip of the old picture must not set the new one aside.
            withdrawn = list(session.scalars(select(Annotation).where(
                Annotation.sample_id.in_(ids),
                Annotation.status.in_([AnnotationStatus.accepted, AnnotationStatus.skipped]))))
            for annotation in withdrawn:
                # Kept as history under a new key, so the annotator's next answer (which may reuse
                # the backend's id, as the simulation does) is stored as a new annotation.
                annotation.status = AnnotationStatus.rejected
                annotation.reason = f"{WITHDRAWN_REASON}; relabel"
                annotation.external_id = f"{annotation.external_id}{WITHDRAWN_MARK}{annotation.id}"[:100]
    for change in changes:
        log.warning("Image %s changed since it was hashed%s", change.path,
                    "" if not change.labeled else (" (labels withdrawn)" if relabel else " (label kept)"))


def _named(changes: list[Changed], shown: int = 3) -> str:
    """'e.g. a, b, c (and N more)': the first few files, by path."""
    names = ", ".join(str(c.path if c.path is not None else c.uri) for c in changes[:shown])
    more = len(changes) - shown
    return f"e.g. {names}" + (f" and {more} more" if more > 0 else "")


def relabel_in_labelstudio(engine: Engine, campaign_id: int, labeled: list[Changed], *,
                           served_ok: bool = False) -> set[int]:
    """Show changed labeled images anew in their Label Studio tasks; returns those samples' ids.

    Only for embedded images (the task's ``data.image`` is a PNG data URI, a copy of the old
    bytes): each task of these samples gets ``data.image`` = the new file's data URI and its
    annotations are deleted in Label Studio, so Label Studio serves it again as unlabeled. The
    old answers stay in the database as history (rejected, with the reason; the caller
    withdraws them). The same task is kept (same id, same ``data.sample_id``), so pushes find it
    and import nothing. Called before the database records the change, so a failure here leaves
    the change to be found and redone by the next run (updating and deleting again is harmless).

    Also used for changed samples whose task holds no answer in the database yet
    (``served_ok=True``): the task gets the new image the same way.

    Nothing is deleted that the database does not hold: when a task has an answer given since
    the last sync, :class:`DataChangedError` asks for `activelabel sync` first, and no task is
    touched (the answer was given on the old picture; once synced it is decided like any other).

    Raises :class:`CampaignStateError` when the images are served (``image_url_prefix`` or
    ``document_root``) and not ``served_ok``: the task shows the file's current bytes already, so
    the annotators review it there (with ``served_ok`` nothing is done). ``LabelStudioUnavailableError``
    when the server cannot be reached.
    """
    from activelabel.annotation.labelstudio import _get
    from activelabel.campaign.data import campaign_data
    from activelabel.campaign.setup import build_annotator
    from activelabel.storage import Campaign

    with session_scope(engine) as session:
        config = CampaignConfig.from_dict(session.get(Campaign, campaign_id).config)
        task_of = {sample_id: task for sample_id, task in session.execute(
            select(Selection.sample_id, Selection.external_task_id).where(
                Selection.sample_id.in_([c.sample_id for c in labeled]), Selection.external_task_id.is_not(None)))}
    sent = [c for c in labeled if c.sample_id in task_of]
    if not sent:
        return set()  # labeled without a task (seed labels): back to the pool, pushed anew if picked
    annotator = build_annotator(config, campaign_data(config))
    images = {c.sample_id: annotator.image_source(c.uri) for c in sent}
    if not all(isinstance(v, str) and v.startswith("data:") for v in images.values()):
        if served_ok:
            return set()
        raise CampaignStateError(
            f"{len(labeled)} labeled image(s) changed (e.g. {labeled[0].path}); in Label Studio the task "
            "shows the new file already: ask the annotators to review it there (sync follows their edits), "
            "then rerun with --accept-changes"
        )
    client = annotator.client
    tasks = {}
    for change in sent:
        task_id = int(task_of[change.sample_id])
        with annotator._talking(f"relabeling changed image {change.uri}: reading task {task_id}"):
            tasks[change.sample_id] = client.tasks.get(id=str(task_id))
    _refuse_unsynced_answers(engine, campaign_id, config.name, sent, tasks, task_of)
    for change in sent:
        task_id, task = int(task_of[change.sample_id]), tasks[change.sample_id]
        with annotator._talking(f"relabeling changed image {change.uri}: updating task {task_id}"):
            client.tasks.update(id=str(task_id), data={**dict(task.data or {}), "image": images[change.sample_id]})
            for ann in task.annotations or []:
                client.annotations.delete(id=int(_get(ann, "id")))
        removed = len(task.annotations or [])
        if removed:
            log.warning("Label Studio task %d of %s shows the changed image now; its %d answer(s) there were "
                        "removed (kept in the campaign's history)", task_id, change.uri, removed)
        else:
            log.warning("Label Studio task %d of %s shows the changed image now (it had no answer yet)",
                        task_id, change.uri)
    return set(images)


def _refuse_unsynced_answers(engine: Engine, campaign_id: int, name: str, sent: list[Changed],
                             tasks: dict, task_of: dict) -> None:
    """Raise DataChangedError when a changed image's task holds answers the database lacks."""
    from activelabel.annotation.labelstudio import _get

    with session_scope(engine) as session:
        stored = set(session.scalars(select(Annotation.external_id).where(Annotation.campaign_id == campaign_id)))
    unsynced = [(change, int(task_of[change.sample_id])) for change in sent
                if any(str(_get(ann, "id")) not in stored for ann in tasks[change.sample_id].annotations or [])]
    if unsynced:
        change, task_id = unsynced[0]
        raise DataChangedError(
            f"{len(unsynced)} changed image(s) have answers in Label Studio that are not synced yet (e.g. "
            f"{change.path}, task {task_id}); nothing was changed: run `activelabel sync {name}` to bring "
            "them in, then rerun (the run asks whether to keep or redo labels given on the old image)"
        )


def _record_gone(engine: Engine, campaign_id: int, gone: list[Changed]) -> None:
    """Unlabeled images no longer on disk: recorded once as unreadable, named in a warning."""
    with session_scope(engine) as session:
        fresh = record_problems(session, campaign_id, [(c.uri, GONE_REASON) for c in gone])
    if fresh:
        log.warning("%d unlabeled image(s) are gone from the data folder (e.g. %s); they are skipped "
                    "(recorded as unreadable, never selected)", fresh, gone[0].path)
