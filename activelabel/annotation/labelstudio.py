"""Label Studio as the annotator: selected samples become tasks, annotations come back as answers.

One Label Studio project per campaign, found by its title (created on first use, with an
Image + single-choice labeling config built from the label set and "Uncertainty sampling").

- :meth:`LabelStudioAnnotator.push` imports one task per selected sample, with
  ``data.sample_id`` and one prediction per task of the round's model version. Label Studio's
  uncertainty sampling serves tasks by ascending prediction score among the predictions of the
  project's ``model_version``, so the score is the task's place in the strategy's ranking over
  every task pushed (``position / n``), and the model's confidence stays in the task data.
  Tasks of earlier rounds still out get this version's prediction added. Push keeps the
  project's model version on the round's and is idempotent: it reads back which samples the
  project already holds (by ``data.sample_id``) and imports only the missing ones.
- :meth:`LabelStudioAnnotator.changed_since` returns every current annotation of the tasks
  changed since a cursor (a task's ``updated_at`` moves on each annotation created, edited or
  deleted), so a sync follows edits and deletions while reading only what changed.
- :meth:`LabelStudioAnnotator.pull` returns one :class:`LabelAnswer` per submitted annotation,
  keyed by Label Studio's annotation id. A skip (cancelled, or an empty result where the codec
  reads it as a skip) comes back as an answer marked ``skipped``, keyed the same way.
  A label outside the label set, several choices or a malformed result are returned as text so
  the caller can reject them with a reason.

Errors are typed: :class:`LabelStudioUnavailableError` (refused, timed out, 5xx) and
:class:`LabelStudioAuthError` (401/403) name the server URL and what was being done. The API
key never appears in a message, a log line or a repr.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from activelabel.annotation.base import LabelAnswer, TaskRequest
from activelabel.annotation.codecs import (
    ChoicesCodec,
    ResultCodec,
    _finite,
    _get,
    build_label_config,
    config_labels,
)
from activelabel.annotation.images import (
    ImageSource,
    LocalFilesSource,
    UnsafeImagePathError,
    dataset_image_source,
    png_data_uri,
    url_prefix_source,
)
from activelabel.annotation.ls_errors import (
    LabelStudioAuthError,
    LabelStudioError,
    LabelStudioProjectError,
    LabelStudioUnavailableError,
    deleted_unless_gone,
    error_for_status,
    typed_errors,
)
from activelabel.annotation.send_once import create_once
from activelabel.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "AnnotationSnapshot",
    "ImageSource",
    "LabelStudioAnnotator",
    "LabelStudioAuthError",
    "LabelStudioError",
    "LabelStudioProjectError",
    "LabelStudioUnavailableError",
    "LocalFilesSource",
    "ResultCodec",
    "UnsafeImagePathError",
    "build_label_config",
    "config_labels",
    "dataset_image_source",
    "png_data_uri",
    "url_prefix_source",
]

SAMPLING = "Uncertainty sampling"
DEFAULT_MODEL_VERSION = "activelabel"
IMPORT_CHUNK = 500  # tasks per import request
PAGE_SIZE = 200  # tasks per page when listing
LOOKUP_CHUNK = 100  # sample ids per Data Manager lookup when pushing
# Reads never filter on Label Studio's task counters (``total_annotations``, ``is_labeled``): its
# Django signals keep them, and deleting a project detaches every signal of the server process
# while it runs (``temporary_disconnect_all_signals``), so two deletions at once can leave them
# detached for good (seen on 1.23.2: annotations stored, ``total_annotations`` 0 from then on).
# ``updated_at`` is written by the annotation's own save, not a signal, so the change cursor holds.

# Data Manager datetime filters accept exactly this format (anything else is an HTTP 500).
LS_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
# Changes read again on the next sync: a save that committed late with an earlier timestamp
# is not missed (reading a task twice is harmless, the sync reconciles idempotently).
CURSOR_OVERLAP = timedelta(seconds=5)

ModelVersion = str | Callable[[], str] | None


@dataclass(frozen=True)
class AnnotationSnapshot:
    """Every current annotation of the tasks changed since a cursor.

    ``sample_ids``: samples whose tasks were read — every annotation they hold now is in
    ``answers``, so a stored one missing there was deleted. ``updated_at``: annotation id ->
    when Label Studio last changed it. ``cursor``: the newest task change seen (Label Studio's
    clock, :data:`LS_TIME_FORMAT`), to pass to the next call; the old one when nothing changed.
    """

    sample_ids: set[int]
    answers: list[LabelAnswer]
    cursor: str | None
    updated_at: dict[str, datetime] = field(default_factory=dict)
    tasks_read: int = 0


def parse_time(value: Any) -> datetime | None:
    """A Label Studio timestamp (a datetime or ISO text, ``Z`` or offset) as an aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def format_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime(LS_TIME_FORMAT)


def _changed_since(cursor: str) -> str:
    since = (parse_time(cursor) or datetime(1970, 1, 1, tzinfo=timezone.utc)) - CURSOR_OVERLAP
    return json.dumps({"filters": {"conjunction": "and", "items": [
        {"filter": "filter:tasks:updated_at", "operator": "greater_or_equal", "type": "Datetime",
         "value": format_time(since)},
    ]}})


@dataclass(frozen=True)
class RepointedImages:
    """What :meth:`LabelStudioAnnotator.repoint_images` did: tasks given the new image, tasks
    that had it already, samples with no task in project ``project_id`` any more."""

    project_id: int
    updated: int
    already: int
    missing: int


def uncounted_tasks(rows: list[Any]) -> int:
    """How many of these tasks hold a submitted annotation that their ``total_annotations`` misses."""
    return sum(
        1 for task in rows
        if not (_get(task, "total_annotations") or 0)
        and any(not _get(a, "was_cancelled") for a in (_get(task, "annotations") or []))
    )


#: The (server, project) pairs this process has warned about: a ``watch`` syncing every few
#: seconds, a ``serve`` tick after tick, said it again at every sync (trial 15 F16, trial 16 F1).
_COUNTERS_SAID: set[tuple[str, int]] = set()


def _warn_if_counters_stopped(url: str, project_id: int, rows: list[Any]) -> None:
    """Say so when Label Studio stopped counting annotations (the note on task counters by
    PAGE_SIZE), once per project and process; later syncs that find it again say so at DEBUG.

    activelabel's sync does not read the counters, but Label Studio's own queue does: it serves a
    task whose annotation it does not count to annotators again. ``rows`` are only the tasks
    this sync read (those changed since the last one), so the count is a lower bound for the
    project, and says so.
    """
    stale = uncounted_tasks(rows)
    if not stale:
        return
    if (url, project_id) in _COUNTERS_SAID:
        log.debug("Label Studio %s: project %d: %d of the tasks this sync read hold uncounted annotations",
                  url, project_id, stale)
        return
    _COUNTERS_SAID.add((url, project_id))
    log.warning(
        "Label Studio %s: project %d: %d of the %d task%s this sync read hold%s annotations that Label Studio "
        "does not count (total_annotations 0; other tasks of the project may too), so its queue serves them to "
        "annotators again. Its signals were detached, which Label Studio 1.23 does when two projects are "
        "deleted at once; restart Label Studio to fix it. activelabel's sync reads the annotations themselves "
        "and is not affected (said once per project while this command runs).",
        url, project_id, stale, len(rows), "" if len(rows) == 1 else "s", "s" if stale == 1 else "")


def _task_entry(task: Any) -> tuple[int, set[str], dict]:
    """``(task id, model versions of its predictions, data)`` of a listed task."""
    return int(task.id), {str(_get(p, "model_version")) for p in (task.predictions or [])}, dict(task.data or {})


def _sample_id(data: Any) -> int | None:
    try:
        return int(_get(data or {}, "sample_id"))
    except (TypeError, ValueError):
        return None


class LabelStudioAnnotator:
    """Annotate through a Label Studio server (implements the ``Annotator`` protocol).

    ``image_source`` turns a sample URI into the task's image value (see
    :mod:`activelabel.annotation.images`). ``model_version`` (a string, or a callable giving
    the current round's version) tags the predictions; push sets the project's model version
    to it so Label Studio orders tasks by those predictions' scores. ``annotations_per_task``
    (> 1 for several annotators per sample) is set on the project when it is created.
    ``local_files_storage`` (default: the image source's ``local_storage_path``, as a
    :class:`LocalFilesSource` has) is a folder under the server's LOCAL_FILES_DOCUMENT_ROOT that
    the project gets as a local-files storage, without which Label Studio does not serve its files.
    ``codec`` (default: :class:`~activelabel.annotation.codecs.ChoicesCodec` of ``labels``) is
    what differs per task kind: the labeling config, the pre-annotation, extra task data and
    how a result becomes an answer (:mod:`activelabel.annotation.codecs`).
    """

    source = "labelstudio"

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        project_title: str,
        labels: list[str],
        image_source: ImageSource,
        model_version: ModelVersion = None,
        annotations_per_task: int = 1,
        local_files_storage: str | None = None,
        codec: ResultCodec | None = None,
        timeout: float = 30.0,
        max_retries: int = 2,
    ) -> None:
        url = (url or "").strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"Label Studio URL {url!r} must start with http:// or https://")
        if not api_key:
            raise ConfigError("the Label Studio API key is empty: set LABEL_STUDIO_API_KEY")
        labels = [str(label) for label in labels]
        if not labels or len(set(labels)) != len(labels) or any(not label for label in labels):
            raise ConfigError(f"Label Studio labels must be distinct non-empty names, got {labels!r}")
        if annotations_per_task < 1:
            raise ConfigError(f"annotations_per_task must be >= 1, got {annotations_per_task}")
        if not project_title or len(project_title) > 50:
            raise ConfigError(
                f"Label Studio project title {project_title!r} must be 1 to 50 characters long"
            )
        self.url = url
        self.project_title = project_title
        self.labels = labels
        self.codec = codec if codec is not None else ChoicesCodec(labels)
        self.image_source = image_source
        self.model_version = model_version
        self.annotations_per_task = annotations_per_task
        self.local_files_storage = local_files_storage or getattr(image_source, "local_storage_path", None)
        self._api_key = api_key
        self._project_id: int | None = None
        #: True once this annotator created its project (none with its title existed): a sync that
        #: finds the project gone says so when it pushes the lost tasks again.
        self.created_project = False
        self._users: dict[int, str] | None = None
        self._served_checked = False
        from label_studio_sdk import LabelStudio

        with self._talking("connecting"):
            self._ls = LabelStudio(base_url=url, api_key=api_key, timeout=timeout, max_retries=max_retries)

    @classmethod
    def from_env(
        cls,
        *,
        project_title: str,
        labels: list[str],
        image_source: ImageSource,
        model_version: ModelVersion = None,
        environ: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> LabelStudioAnnotator:
        """Read ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY`` from the environment."""
        env = os.environ if environ is None else environ
        url, key = env.get("LABEL_STUDIO_URL", ""), env.get("LABEL_STUDIO_API_KEY", "")
        if not url:
            raise ConfigError("LABEL_STUDIO_URL is not set: export the Label Studio server's URL")
        if not key:
            raise ConfigError("LABEL_STUDIO_API_KEY is not set: export a Label Studio access token")
        return cls(url, key, project_title=project_title, labels=labels, image_source=image_source,
                   model_version=model_version, **kwargs)

    def __repr__(self) -> str:
        return (f"LabelStudioAnnotator(url={self.url!r}, project_title={self.project_title!r}, "
                f"labels={self.labels!r})")

    @property
    def client(self):
        """The underlying ``label_studio_sdk.LabelStudio`` client."""
        return self._ls

    @property
    def project_id(self) -> int:
        return self.ensure_project()

    # -- errors ---------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _talking(self, what: str) -> AbstractContextManager[None]:
        """SDK and transport failures inside as typed errors naming the URL, never the key
        (:func:`~activelabel.annotation.ls_errors.typed_errors`)."""
        return typed_errors(self.url, what, scrub=self._scrub)

    # -- project --------------------------------------------------------------------------

    def ensure_project(self) -> int:
        """The id of the project titled ``project_title``, created if there is none."""
        return self._ensure_project("")

    def _ensure_project(self, doing: str) -> int:
        if self._project_id is not None:
            return self._project_id
        doing = f"{doing}: " if doing else ""
        what = f"{doing}looking up project {self.project_title!r}"
        found = self._projects_titled(what)
        if found:
            project = found[0]
            with self._talking(what):
                config = self._ls.projects.get(id=project.id).label_config or ""
            theirs = self.codec.config_labels(config)
            if sorted(theirs) != sorted(self.codec.project_labels):
                raise LabelStudioProjectError(
                    f"Label Studio project {self.project_title!r} (id {project.id}) at {self.url} has "
                    f"labels {theirs!r}, the campaign has {self.codec.project_labels!r}; use another project title"
                )
            log.info("Label Studio %s: using project %r (id %d)", self.url, self.project_title, project.id)
        else:
            project = create_once(
                self._talking, f"{doing}creating project {self.project_title!r}",
                lambda once: self._ls.projects.create(
                    title=self.project_title,
                    label_config=self.codec.label_config(),
                    sampling=SAMPLING,
                    show_skip_button=True,
                    maximum_annotations=self.annotations_per_task,
                    overlap_cohort_percentage=100,
                    description="Created by activelabel: uncertain samples first.",
                    request_options=once,
                ),
                # quiet: several here are sorted out just below
                landed=lambda: next(iter(self._projects_titled(what, warn=False)), None),
            )
            log.info("Label Studio %s: created project %r (id %d)", self.url, self.project_title, project.id)
            self.created_project = True
            # Every process must settle on the same project: if another one appeared with this title
            # (Label Studio ran the create twice, a second process at the same moment), the oldest wins.
            project = (self._drop_projects_made_twice(what) or [project])[0]
        self._project_id = int(project.id)
        self._ensure_local_storage(self._project_id, doing)
        return self._project_id

    def _projects_titled(self, what: str, *, warn: bool = True) -> list[Any]:
        """The projects with exactly this campaign's title, oldest first. Several is a fault: it
        is named (unless ``warn`` is false), and the oldest is used by every process alike."""
        with self._talking(what):
            # by id: a listing read while projects come and go may hold one project twice
            titled = {p.id: p for p in self._ls.projects.list(title=self.project_title)
                      if p.title == self.project_title}
            found = [titled[project_id] for project_id in sorted(titled)]
        if len(found) > 1 and warn:
            log.warning(
                "Label Studio %s: %d projects are titled %r (ids %s); activelabel uses the oldest, id %d. "
                "Move any answers from the others into it, then delete them in Label Studio.",
                self.url, len(found), self.project_title, ", ".join(str(p.id) for p in found), found[0].id)
        return found

    def _drop_projects_made_twice(self, what: str) -> list[Any]:
        """Right after this process created the campaign's project (none had its title before):
        the projects with its title, oldest first, less the newer empty ones, which are deleted.

        Two ways make more than one:

        - Label Studio on SQLite reruns a whole request that ended in "database is locked"
          (``core.middleware.DatabaseIsLockedRetryMiddleware``), and a project create can hit it
          after the project was written (in ``ProjectSummary.reset``): one POST, answered once,
          makes two projects (this project's CI, stop 23: ids 30 and 31);
        - another process created the same campaign's project at the same moment.

        Every process uses the oldest, so a newer one is only clutter that annotators would see;
        it is deleted only while it holds no task, so no work is ever removed.
        """
        found = self._projects_titled(what, warn=False)
        kept, extra = found[:1], found[1:]
        deleted: list[int] = []
        for project in extra:
            if project.task_number:
                kept.append(project)
                continue
            with self._talking(f"{what}: deleting project {project.id}, made twice"):
                deleted_unless_gone(lambda: self._ls.projects.delete(id=project.id))
            deleted.append(int(project.id))
        if deleted:
            log.warning(
                "Label Studio %s: project %r was made %d times while activelabel created it (ids %s): on "
                "SQLite, Label Studio reruns a create that hit 'database is locked', or another process "
                "created it at the same moment. activelabel uses the oldest, id %d, and deleted the empty "
                "%s %s.", self.url, self.project_title, len(found), ", ".join(str(p.id) for p in found),
                found[0].id, "id" if len(deleted) == 1 else "ids", ", ".join(map(str, deleted)))
        if len(kept) > 1:
            return self._projects_titled(what)  # some hold tasks: named, and the oldest used
        return kept

    def _ensure_local_storage(self, project_id: int, doing: str) -> None:
        """Local files are served only to a project with a local-files storage holding them."""
        path = self.local_files_storage
        if not path:
            return
        what = f"{doing}adding local-files storage {path!r} to project {project_id}"

        def storage_with_path() -> Any:
            """The project's local-files storage of this path, or None (also what a failed create left)."""
            with self._talking(what):
                return next((s for s in self._ls.import_storage.local.list(project=project_id)
                             if _get(s, "path") == path), None)

        if storage_with_path() is None:
            create_once(self._talking, what, lambda once: self._ls.import_storage.local.create(
                project=project_id, path=path, title="activelabel images", use_blob_urls=False,
                request_options=once,
            ), storage_with_path)

    # -- push -----------------------------------------------------------------------------

    def _version(self, model_version: str | None) -> str:
        if model_version:
            return model_version
        provided = self.model_version() if callable(self.model_version) else self.model_version
        return provided or DEFAULT_MODEL_VERSION

    def _prediction(self, task: TaskRequest, version: str, serving_score: float) -> dict:
        """The pre-annotation: the predicted label, scored by the task's place in the order.

        Label Studio serves ascending prediction scores first, so the score is the task's
        position in the strategy's ranking over everything sent (0 = most informative), not
        the model's confidence; the confidence rides along in the result and the task data.
        """
        return {"model_version": version, "score": serving_score, "result": self.codec.prediction_result(task)}

    @staticmethod
    def serving_scores(tasks: list[TaskRequest]) -> dict[int, float]:
        """``sample_id -> position / n`` in the strategy's ranking (highest score first, ties by
        the lower sample id; a non-finite score last). Ascending, that is the serving order."""
        def key(t: TaskRequest) -> tuple[float, int]:
            score = _finite(t.score)
            return (-score if score is not None else math.inf, t.sample_id)

        ordered = sorted(tasks, key=key)
        return {t.sample_id: round(i / len(ordered), 9) for i, t in enumerate(ordered)}

    def _task_data(self, t: TaskRequest, order: int) -> dict:
        # Evaluation and cold-start picks are random (no model, no predicted label): their score
        # is a random draw, not an uncertainty, and their stored confidence a placeholder 0.0,
        # not "0 % sure" (trial F7a), so annotators are shown neither (null in the task data).
        modelled = bool(t.predicted_label) or t.predicted_mask is not None
        return {
            "sample_id": t.sample_id,
            "uri": t.uri,
            "uncertainty": _finite(t.score) if modelled else None,
            "rank": t.rank,
            "order": order,
            "predicted_label": t.predicted_label,
            "confidence": _finite(t.confidence) if modelled else None,
            **self.codec.task_data(t),
        }

    def _tasks_by_sample(self, project_id: int, what: str, sample_ids: list[int]) -> dict[int, list[Any]]:
        """``sample_id -> the project's tasks holding it``, oldest first, for these samples.

        Asks for those samples only (a Data Manager filter on ``data.sample_id``, in chunks), so
        a push costs what it sends, not the size of the project.
        """
        rows = []
        for start in range(0, len(sample_ids), LOOKUP_CHUNK):
            chunk = sample_ids[start:start + LOOKUP_CHUNK]
            query = json.dumps({"filters": {"conjunction": "or", "items": [
                {"filter": "filter:tasks:data.sample_id", "operator": "equal", "type": "Number", "value": s}
                for s in chunk
            ]}})
            with self._talking(f"{what}: looking up {len(chunk)} samples among the project's tasks"):
                rows.extend(self._ls.tasks.list(project=project_id, fields="all", query=query,
                                                page_size=PAGE_SIZE))
        wanted = set(sample_ids)
        found: dict[int, dict[int, Any]] = {}
        for task in rows:  # by id: a listing read while tasks come and go may hold one twice
            sample_id = _sample_id(task.data)
            if sample_id is not None and sample_id in wanted:
                found.setdefault(sample_id, {})[int(task.id)] = task
        return {sample_id: [tasks[i] for i in sorted(tasks)] for sample_id, tasks in found.items()}

    def _existing_tasks(
        self, project_id: int, what: str, sample_ids: list[int]
    ) -> dict[int, tuple[int, set[str], dict]]:
        """``sample_id -> (task id, model versions of its predictions, data)`` for these samples;
        a sample held by several tasks is named, and its oldest task used."""
        found: dict[int, tuple[int, set[str], dict]] = {}
        for sample_id, tasks in self._tasks_by_sample(project_id, what, sample_ids).items():
            if len(tasks) > 1:
                log.warning("Label Studio %s: project %d holds sample %d %d times (tasks %s); using %d",
                            self.url, project_id, sample_id, len(tasks),
                            ", ".join(str(t.id) for t in tasks), tasks[0].id)
            found[sample_id] = _task_entry(tasks[0])
        return found

    def tasks_of_samples(self, sample_ids: list[int], *, round_index: int | None = None) -> dict[int, str]:
        """``sample_id -> task id`` of the project's tasks holding these samples (by ``data.sample_id``).

        Sync asks this for the samples still out before reading their tasks, so tasks deleted in
        Label Studio (one by one, with their project, or by a server reset) are found by what is
        missing here rather than by a 404 on reading them.
        """
        what = f"syncing round {round_index}" if round_index is not None else "syncing"
        project_id = self._ensure_project(what)
        found = self._existing_tasks(project_id, what, sorted(set(sample_ids)))
        return {sample_id: str(task_id) for sample_id, (task_id, _, _) in found.items()}

    def repoint_images(self, images: Mapping[int, str], doing: str) -> RepointedImages:
        """Give each of these samples' tasks the image reference ``images[sample_id]`` (a served
        path or URL, or an embedded data URI), keeping every other data key.

        Used when the campaign's files moved (:mod:`activelabel.campaign.relocation`). A task that
        shows that image already is left as it is, so a rerun after a crash finishes the rest and
        a complete rerun changes nothing. Samples without a task in the project (deleted in Label
        Studio) are counted in ``missing``. Raises :class:`LabelStudioUnavailableError` and
        friends when the server fails midway (the tasks updated so far keep the new image).
        """
        project_id = self._ensure_project(doing)  # adds the local-files storage of a new folder
        existing = self._existing_tasks(project_id, doing, sorted(images))
        updated = already = 0
        for sample_id, (task_id, _, data) in sorted(existing.items()):
            if data.get("image") == images[sample_id]:
                already += 1
                continue
            with self._talking(f"{doing}: updating the image of task {task_id}"):
                self._ls.tasks.update(id=str(task_id), data={**data, "image": images[sample_id]})
            updated += 1
        return RepointedImages(project_id, updated, already, missing=len(images) - len(existing))

    def push(
        self, tasks: list[TaskRequest], model_version: str | None = None, *, round_index: int | None = None,
    ) -> dict[int, str]:
        """Make sure each sample is a task in the project; returns ``sample_id -> task id``.

        ``tasks`` are all the samples that should be out with annotators now: the round's
        selection and those of earlier rounds still unresolved, each with this round's score.
        Samples the project already holds keep their task and get this model version's
        prediction (and this round's figures in their data) if they lack it; only the missing
        ones are imported. Every prediction's score is the task's place in the strategy's
        ranking over all of ``tasks`` (:meth:`serving_scores`), so Label Studio's uncertainty
        sampling serves them in the strategy's order. Idempotent.
        """
        what = f"pushing round {round_index}" if round_index is not None else f"pushing {len(tasks)} tasks"
        unique = list({t.sample_id: t for t in tasks}.values())
        version = self._version(model_version)
        project_id = self._ensure_project(what)
        if not unique:
            return {}
        serving = self.serving_scores(unique)
        order = {sample_id: i + 1 for i, sample_id in enumerate(sorted(serving, key=serving.get))}
        existing = self._existing_tasks(project_id, what, [t.sample_id for t in unique])
        missing = [t for t in unique if t.sample_id not in existing]
        payload = [
            {
                "data": {
                    "image": self.image_source(t.uri),  # may refuse a path before anything is sent
                    **self._task_data(t, order[t.sample_id]),
                },
                "predictions": [self._prediction(t, version, serving[t.sample_id])],
            }
            for t in missing
        ]
        if payload:
            self._check_served(missing[0], payload[0]["data"]["image"], what)
        stale = [t for t in unique if t.sample_id in existing and version not in existing[t.sample_id][1]]
        for t in stale:
            task_id, _, data = existing[t.sample_id]
            doing = f"{what}: adding a {version} prediction to task {task_id}"
            with self._talking(doing):
                # This round's figures in the data first: a crash before the prediction redoes both.
                self._ls.tasks.update(id=task_id, data={**data, **self._task_data(t, order[t.sample_id])})
            self._add_prediction(project_id, doing, task_id, t, version, serving[t.sample_id])
        ids: dict[int, str] = {}
        for t in unique:
            if t.sample_id in existing:
                ids[t.sample_id] = str(existing[t.sample_id][0])
        for start in range(0, len(payload), IMPORT_CHUNK):
            ids.update(self._import(project_id, what, missing[start:start + IMPORT_CHUNK],
                                    payload[start:start + IMPORT_CHUNK]))
        if missing:
            ids.update(self._settle_imported(project_id, what, missing, version, serving))
        # Label Studio accepts a project model version only once predictions of it exist.
        with self._talking(f"{what}: setting the project's model version to {version!r}"):
            self._ls.projects.update(id=project_id, model_version=version)
        log.info(
            "Label Studio %s: project %d: imported %d tasks, %d already there, model version %s",
            self.url, project_id, len(missing), len(unique) - len(missing), version,
        )
        return ids

    def _check_served(self, task: TaskRequest, image: str, what: str) -> None:
        """Before the first import, fetch one served image as the annotators' browsers will, and
        refuse with what to do unless Label Studio serves it.

        A ``document_root`` that is not the server's ``LOCAL_FILES_DOCUMENT_ROOT`` but a folder
        inside it (the folder the photos are in: an easy slip) passes every local check, and
        Label Studio accepts its local-files storage; but it resolves ``?d=<path>`` under its own
        root, so every task's image answered 404 and annotators saw broken images, with nothing
        said (trial 15 F1). Only served local files are checked (an ``image_url_prefix`` server
        may want a browser's cookies); once per annotator, and nothing is sent before it.
        """
        if self._served_checked or not image.startswith(LocalFilesSource.prefix):
            return
        from urllib.parse import urljoin

        wrapper = self._ls._client_wrapper  # the SDK's own auth headers (legacy token or access token)
        address = urljoin(self.url.rstrip("/") + "/", image)  # as a browser resolves the path
        doing = f"{what}: fetching one served image ({image})"
        with self._talking(doing):
            with wrapper.httpx_client.httpx_client.stream("GET", address, headers=wrapper.get_headers(),
                                                          timeout=60) as answer:
                code = answer.status_code
        if code == 200:
            self._served_checked = True
            return
        if code not in (403, 404):  # 403 here: serving is off; 404: not under the server's root
            raise error_for_status(self.url, doing, code, "", self._scrub)
        local = getattr(self.image_source, "local_path", None)
        root = getattr(self.image_source, "document_root", None)
        where = f" ({local(task.uri)})" if local is not None else ""
        if code == 403:
            fix = ("start Label Studio with LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and "
                   f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root}")
        else:
            fix = (f"annotator.document_root ({root}) must be the folder the server was started with as "
                   "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, not a folder inside it: fix it in the campaign file "
                   "and run again")
        raise LabelStudioError(
            f"Label Studio at {self.url} cannot serve the campaign's images: sample {task.sample_id}'s image "
            f"{image}{where} answered HTTP {code}, so annotators would see a broken image; {fix}. No task was "
            "sent: the round resumes at its push."
        )

    def _settle_imported(
        self, project_id: int, what: str, imported: list[TaskRequest], version: str, serving: dict[int, float],
    ) -> dict[int, str]:
        """Read the imported tasks back and mend what Label Studio said was done but did other
        than asked; ``sample_id -> task id`` of the task each sample keeps.

        - **Imported twice.** Label Studio on SQLite reruns a whole request that ended in
          "database is locked" (``DatabaseIsLockedRetryMiddleware``); an import can hit it after
          its tasks were written (counters, project summary), so one import, answered once,
          holds its samples twice. These samples had no task before this import, so every task
          holding them is this import's: the oldest is kept and the newer ones deleted while
          they hold no annotation (an annotated one is kept, named, and left to the team).
        - **Predictions dropped.** Label Studio 1.23 (seen on its SQLite database) sometimes
          stores an import's tasks without their predictions when several imports reach it at
          once, and still answers 201 with every task id. The tasks would be served without
          pre-annotation and out of the strategy's order, and the project would refuse this model
          version, so each missing prediction is created on its own (one request per task).
        """
        by_sample = self._tasks_by_sample(project_id, what, [t.sample_id for t in imported])
        twice = {s: tasks[1:] for s, tasks in by_sample.items() if len(tasks) > 1}
        if twice:
            self._delete_tasks_made_twice(project_id, what, twice)
        stored = {s: _task_entry(tasks[0]) for s, tasks in by_sample.items()}
        dropped = [t for t in imported if t.sample_id in stored and version not in stored[t.sample_id][1]]
        if dropped:
            log.warning(
                "Label Studio %s: project %d stored %d imported tasks without their %s prediction; adding them again",
                self.url, project_id, len(dropped), version,
            )
        for t in dropped:
            task_id = stored[t.sample_id][0]
            self._add_prediction(project_id, f"{what}: adding the {version} prediction Label Studio dropped "
                                 f"from task {task_id}", task_id, t, version, serving[t.sample_id])
        return {sample_id: str(entry[0]) for sample_id, entry in stored.items()}

    def _delete_tasks_made_twice(self, project_id: int, what: str, newer: dict[int, list[Any]]) -> None:
        """Delete these newer copies of just-imported tasks (see :meth:`_settle_imported`)."""
        deleted: list[int] = []
        for sample_id, tasks in sorted(newer.items()):
            for task in tasks:
                if _get(task, "total_annotations") or _get(task, "annotations"):
                    log.warning("Label Studio %s: project %d holds sample %d twice and its task %d is already "
                                "annotated, so it is kept; activelabel uses the oldest task",
                                self.url, project_id, sample_id, task.id)
                    continue
                with self._talking(f"{what}: deleting task {task.id}, imported twice"):
                    deleted_unless_gone(lambda: self._ls.tasks.delete(id=task.id))
                deleted.append(int(task.id))
        if deleted:
            log.warning(
                "Label Studio %s imported %d tasks of project %d twice from one import: on SQLite it reruns a "
                "request that hit 'database is locked'. activelabel keeps each sample's oldest task and deleted "
                "the empty copies (tasks %s).", self.url, len(deleted), project_id,
                ", ".join(map(str, deleted)))

    def _import(self, project_id: int, what: str, chunk: list[TaskRequest], requests: list[dict]) -> dict[int, str]:
        """Import these tasks (one request each in ``requests``, alike in order); ``sample_id -> task id``.

        Sent once (:mod:`~activelabel.annotation.send_once`): after a failed answer, the samples
        the project holds by then are looked up, and only the others are sent again, so an import
        Label Studio did but answered 500 is not imported twice.
        """
        ids: dict[int, str] = {}
        pending = list(zip(chunk, requests))

        def send(once: dict) -> dict[int, str]:
            response = self._ls.projects.import_tasks(id=project_id, request=[r for _, r in pending],
                                                      return_task_ids=True, request_options=once)
            task_ids = list(response.task_ids or [])
            if len(task_ids) != len(pending):
                raise LabelStudioError(
                    f"Label Studio at {self.url} returned {len(task_ids)} task ids for {len(pending)} "
                    f"imported tasks while {what}; push again to reconcile"
                )
            ids.update({t.sample_id: str(task_id) for (t, _), task_id in zip(pending, task_ids)})
            return ids

        def landed() -> dict[int, str] | None:
            stored = self._existing_tasks(project_id, what, [t.sample_id for t, _ in pending])
            ids.update({sample_id: str(task_id) for sample_id, (task_id, _, _) in stored.items()})
            pending[:] = [(t, r) for t, r in pending if t.sample_id not in stored]
            return None if pending else ids

        return create_once(self._talking, f"{what}: importing {len(chunk)} tasks into project {project_id}",
                           send, landed)

    def _add_prediction(
        self, project_id: int, what: str, task_id: int, task: TaskRequest, version: str, serving_score: float,
    ) -> None:
        """Give this task a ``version`` prediction, sent once: after a failed answer, the task is
        read back and the prediction sent again only if it does not hold one of that version."""
        def landed() -> bool | None:
            stored = self._existing_tasks(project_id, what, [task.sample_id]).get(task.sample_id)
            return True if stored is not None and version in stored[1] else None

        create_once(self._talking, what, lambda once: self._ls.predictions.create(
            task=task_id, project=project_id, **self._prediction(task, version, serving_score),
            request_options=once,
        ), landed)

    # -- pull -----------------------------------------------------------------------------

    def _user_names(self) -> dict[int, str]:
        """User id -> email (read once per pull); empty when the user list is not readable."""
        if self._users is None:
            try:
                with self._talking("listing users"):
                    self._users = {int(u.id): str(u.email) for u in self._ls.users.list() if u.email}
            except LabelStudioUnavailableError:
                raise
            except LabelStudioError:
                self._users = {}
        return self._users

    def _annotator(self, completed_by: Any) -> str:
        """The annotator's email where Label Studio shows it, else the user id as text."""
        if isinstance(completed_by, Mapping):
            if completed_by.get("email"):
                return str(completed_by["email"])
            completed_by = completed_by.get("id")
        try:
            user_id = int(completed_by)
        except (TypeError, ValueError):
            return str(completed_by)
        return self._user_names().get(user_id, str(user_id))

    def pull(self, tasks: list[TaskRequest], *, round_index: int | None = None) -> list[LabelAnswer]:
        """Every submitted annotation of these samples, one answer each (a skip is one marked ``skipped``)."""
        what = f"pulling round {round_index}" if round_index is not None else f"pulling {len(tasks)} tasks"
        wanted = {t.sample_id for t in tasks}
        if not wanted:
            return []
        project_id = self._ensure_project(what)
        self._users = None
        with self._talking(f"{what}: listing the tasks of project {project_id}"):
            rows = list(self._ls.tasks.list(project=project_id, fields="all", page_size=PAGE_SIZE))
        answers: list[LabelAnswer] = []
        for task in sorted(rows, key=lambda t: t.id):
            sample_id = _sample_id(task.data)
            if sample_id not in wanted:
                continue
            answers.extend(answer for answer, _ in self._answers(sample_id, task))
        log.info("Label Studio %s: project %d: %d answers for %d samples", self.url, project_id,
                 len(answers), len({a.sample_id for a in answers}))
        return answers

    def answers_of_tasks(self, tasks: list[TaskRequest], *, round_index: int | None = None) -> list[tuple[LabelAnswer, datetime | None]]:
        """Every current annotation of these tasks, read task by task (by their Label Studio ids).

        Sync's safety net for the few samples still out: whatever the change cursor saw, the
        tasks a round waits for are read whole, so a round never waits on an answer that is there.
        """
        what = f"syncing round {round_index}" if round_index is not None else "syncing"
        out: list[tuple[LabelAnswer, datetime | None]] = []
        for task in tasks:
            if task.external_task_id is None:
                continue
            with self._talking(f"{what}: reading task {task.external_task_id}"):
                row = self._ls.tasks.get(id=str(task.external_task_id))
            out.extend(self._answers(task.sample_id, row))
        return out

    def _answers(self, sample_id: int, task: Any) -> list[tuple[LabelAnswer, datetime | None]]:
        """The submitted annotations of one task. A skip (``was_cancelled``, or an empty result
        where the codec reads it as a skip) comes back marked ``skipped`` with label "", keyed
        by its annotation id like any answer, so the sync stores it once and follows it when the
        annotator turns it into an answer (Label Studio keeps the id). The codec decodes each
        other result; one it cannot use comes back with ``error`` set, for the sync to store as
        rejected."""
        out = []
        for annotation in sorted(task.annotations or [], key=lambda a: int(_get(a, "id"))):
            result = _get(annotation, "result") or []
            external_id = str(_get(annotation, "id"))
            skipped = bool(_get(annotation, "was_cancelled")) or (not result and self.codec.empty_is_skip)
            if skipped:
                label, mask, error = "", None, None
            elif isinstance(result, list):
                decoded = self.codec.answer(result, f"annotation {external_id}")
                label, mask, error = decoded.label, decoded.mask, decoded.error
            else:
                label, mask, error = json.dumps(result, default=str)[:200], None, None
            out.append((LabelAnswer(
                sample_id=sample_id,
                annotator=self._annotator(_get(annotation, "completed_by")),
                label=label,
                external_id=external_id,
                mask=mask,
                error=error,
                skipped=skipped,
            ), parse_time(_get(annotation, "updated_at")) or parse_time(_get(annotation, "created_at"))))
        return out

    def changed_since(self, cursor: str | None, *, round_index: int | None = None) -> AnnotationSnapshot:
        """Every current annotation of the tasks Label Studio changed since ``cursor``.

        A task's ``updated_at`` moves when one of its annotations is created, edited or deleted
        (checked on 1.23.2), so a Data Manager filter on it finds exactly the tasks to re-read —
        the cost follows what changed, not the size of the project. ``cursor=None`` reads every
        task (the first sync: Label Studio's ``total_annotations`` cannot be trusted to find the
        annotated ones; see the note on task counters by ``PAGE_SIZE``). Tasks are read whole, so
        an annotation missing from the answers of a sample in ``sample_ids`` was deleted there.
        """
        what = f"syncing round {round_index}" if round_index is not None else "syncing"
        project_id = self._ensure_project(what)
        self._users = None
        # The first sync reads every task, not only "annotated" ones (the note by PAGE_SIZE).
        query = {} if cursor is None else {"query": _changed_since(cursor)}
        with self._talking(f"{what}: listing tasks of project {project_id} changed since {cursor or 'ever'}"):
            rows = list(self._ls.tasks.list(project=project_id, fields="all", page_size=PAGE_SIZE, **query))
        newest = parse_time(cursor) if cursor else None
        sample_ids: set[int] = set()
        answers: list[LabelAnswer] = []
        updated: dict[str, datetime] = {}
        for task in sorted(rows, key=lambda t: t.id):
            changed = parse_time(_get(task, "updated_at"))
            if changed is not None and (newest is None or changed > newest):
                newest = changed
            sample_id = _sample_id(task.data)
            if sample_id is None:
                continue
            sample_ids.add(sample_id)
            for answer, at in self._answers(sample_id, task):
                answers.append(answer)
                if at is not None:
                    updated[answer.external_id] = at
        log.info("Label Studio %s: project %d: %d task%s changed since %s, %d answer%s", self.url, project_id,
                 len(rows), "" if len(rows) == 1 else "s", cursor or "ever", len(answers),
                 "" if len(answers) == 1 else "s")
        _warn_if_counters_stopped(self.url, project_id, rows)
        return AnnotationSnapshot(
            sample_ids=sample_ids, answers=answers, updated_at=updated, tasks_read=len(rows),
            cursor=format_time(newest) if newest is not None else cursor,
        )
