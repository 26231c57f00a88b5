"""A relocation (``run --relocate``) carried to Label Studio: tasks still out show the moved images.

Only served images need it. An embedded image (the default) is a copy of the pixels in the
task, and a relocation requires the same bytes at the new place, so nothing changes. Served
images are references to the file:

- ``annotator.document_root``: the task's ``data.image`` is ``/data/local-files/?d=<path of the
  file under the document root>`` (:class:`~activelabel.annotation.images.LocalFilesSource`), and
  Label Studio serves it only to a project with a local-files storage holding the file (the data
  folder). A move under the same root changes that path: the tasks still out get the new one
  and the project a storage for the new folder (:func:`carry_to_labelstudio`). A new folder
  outside the root cannot be served at all: refused before anything is written
  (:func:`refuse_outside_document_root`).
- ``annotator.image_url_prefix``: the image is ``prefix + sample URI``, and sample URIs are
  relative to the data folder (:mod:`activelabel.campaign.data`), so a move changes no URL; the
  user makes the prefix serve the new folder. Only a prefix changed in the same run changes the
  tasks' URLs, and they are then updated the same way.

A served campaign whose settings now embed the images (``document_root`` left out, as the
refusal below suggests) gets the embedded image in its tasks still out, the same way.

Crash-safe by its place in :func:`~activelabel.campaign.setup.prepare_campaign`: it runs after
the files are checked at the new place and *before* the new location is stored, so a failure
(or a crash) leaves the campaign still to be relocated, and the rerun updates only the tasks not
updated yet (each task is compared with its new image first; nothing is imported or duplicated).
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine

from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.still_out import tasks_still_out
from activelabel.errors import ConfigError

log = logging.getLogger(__name__)


def refuse_outside_document_root(config: CampaignConfig) -> None:
    """Raise :class:`ConfigError` when a Label Studio campaign serving its files from
    ``annotator.document_root`` was moved to a data folder outside that root (Label Studio
    could not serve any of its images). Called before a relocation writes anything."""
    if config.annotator != "labelstudio" or not config.document_root or config.image_url_prefix:
        return
    from activelabel.annotation.images import outside_document_root
    from activelabel.campaign.data import data_root

    folder = data_root(str(Path(config.data_pool).expanduser())).resolve()
    root = Path(config.document_root).expanduser().resolve()
    if outside_document_root(folder, root):  # the root itself too: it cannot be the project's storage
        raise ConfigError(
            f"--relocate: the new data folder {str(folder)!r} is not under annotator.document_root {str(root)!r}, "
            "so Label Studio could not serve its images to the tasks still out; move the folder under "
            f"{str(root)!r}, or set annotator.document_root to the Label Studio server's LOCAL_FILES_DOCUMENT_ROOT "
            "above the new folder (the server must use that root too), or leave document_root out to embed the "
            "images; nothing was changed"
        )


def carry_to_labelstudio(engine: Engine, campaign_id: int, stored: CampaignConfig,
                         config: CampaignConfig) -> str | None:
    """Make the Label Studio tasks still out show the images at the relocated place; returns
    the line telling the user what was done (None when there is nothing to say: another
    annotator, embedded images, no task still out; the project then gets the new folder's
    storage from the next use of the annotator, which adds it when missing).

    With ``document_root``: the project gets a local-files storage for the new data folder
    (kept if it has one), then every task still out whose ``data.image`` differs from the new
    image reference gets it (``tasks.update``; every other data key, ``sample_id`` included,
    kept). Tasks already showing the new one are left as they are, so a rerun after a crash
    finishes the rest and a complete rerun changes nothing.

    Answered tasks (their sample's label is resolved) are left alone: their answers are in the
    database, no annotator is served them again, and the task is the record of what was
    answered; rewriting it would also move its ``updated_at``, which is Label Studio's change
    cursor, so the next sync would read every answered task of the campaign again. Reviewing one
    in Label Studio after the move shows the old, now broken, image reference.

    Raises :class:`ConfigError` when a task's image would fall outside the document root, before
    any task is changed; ``LabelStudioUnavailableError`` and friends when the server fails (the
    relocation is then not stored, and the rerun carries it out).
    """
    served = [c for c in (stored, config) if c.document_root or c.image_url_prefix]
    if config.annotator != "labelstudio" or not served:
        return None  # embedded before and after: the task holds the same pixels
    from activelabel.campaign.data import data_root

    folder = data_root(str(Path(config.data_pool).expanduser())).resolve()
    # Partly answered tasks included: annotators may still open them.
    out = {t.sample_id: t.uri for t in tasks_still_out(engine, campaign_id, config.annotations_per_task)}
    if config.image_url_prefix and stored.image_url_prefix == config.image_url_prefix:
        # prefix + URI relative to the data folder: the move changes no URL (the prefix is not
        # shown, it may hold a token).
        return (f"Label Studio: the {len(out)} task(s) still out keep their image URLs (image_url_prefix + the "
                f"path inside the data folder, which the move keeps): make the prefix serve {folder}")
    if not out:
        return None
    from activelabel.annotation.images import LocalFilesSource, UnsafeImagePathError
    from activelabel.campaign.data import campaign_data
    from activelabel.campaign.setup import build_annotator

    annotator = build_annotator(config, campaign_data(config))
    try:
        images = {sample_id: annotator.image_source(uri) for sample_id, uri in out.items()}
    except UnsafeImagePathError as error:
        raise ConfigError(
            f"--relocate: image {error.path!r} is not under annotator.document_root {error.root!r}, so Label "
            "Studio could not serve it; keep the data under the document root; nothing was changed"
        ) from None
    done = annotator.repoint_images(images, f"relocating campaign {config.name!r}")
    if done.missing:  # deleted in Label Studio: nothing to point at the new place
        log.warning("Label Studio: %d task(s) still out are not in project %d any more (deleted there?); "
                    "the next sync pushes them again with the new image", done.missing, done.project_id)
    if isinstance(annotator.image_source, LocalFilesSource):
        where = folder
    elif all(value.startswith("data:") for value in images.values()):
        where = "the task itself (embedded)"
    else:
        where = "the new image_url_prefix"
    return (f"Label Studio: {done.updated} task(s) still out now show images from {where}"
            + (f" ({done.already} did already)" if done.already else ""))
