"""Tasks still out that Label Studio lost are pushed again, so the round goes on.

A Label Studio server reset (empty database), a deleted project or single deleted tasks leave
the database waiting on task ids that no longer exist: reading them is an HTTP 404, and before
this module every sync, ``run`` and ``resume`` failed on it for good.

Sync therefore looks the samples still out up by ``data.sample_id`` (as push does) before
reading their tasks, and pushes the missing ones again from what the database holds (the
selection's rank, score and predicted label), storing each new task id in
``selection.external_task_id``. This happens on its own, with a WARNING, not behind an option:
the round cannot go on any other way, the push is idempotent (a rerun or a concurrent sync
imports nothing twice), and nothing the user chose is undone. What cannot come back is said in
the warning: answers given in the lost tasks and never synced are gone with them; answers that
were synced stay in the database, except the votes of samples still out (``annotations_per_task``
> 1, or a rejected answer), which follow Label Studio like any deletion there (recorded as
deleted in the history) because the re-created task holds none of them.

Limits: re-created tasks are ordered among themselves only (their prediction score is their
place among the tasks pushed again), and a segmentation task comes back without its predicted
mask (the next round's push adds the then current model's prediction to every task still out).
"""

from __future__ import annotations

import dataclasses
import logging

from sqlalchemy import Engine, select

from activelabel.annotation import TaskRequest
from activelabel.storage import Annotation, Campaign, Round, Selection, session_scope
from activelabel.storage.repository import WITHDRAWN_MARK, latest_round

log = logging.getLogger(__name__)

__all__ = ["restore_lost_tasks"]


def restore_lost_tasks(engine: Engine, campaign: Campaign, annotator, waiting: list[TaskRequest],
                       round_index: int) -> list[TaskRequest]:
    """``waiting`` with the task ids Label Studio holds now, lost tasks pushed again first.

    ``waiting``: tasks still out (:func:`~activelabel.campaign.still_out.tasks_still_out`), as
    sync is about to read them.

    A sample found under another task id than the stored one (a push again that crashed before
    storing its ids) only gets the stored id set right. Returns the requests unchanged where
    the annotator cannot look tasks up by sample (the simulated oracle).
    """
    if not waiting or not hasattr(annotator, "tasks_of_samples"):
        return waiting
    held = annotator.tasks_of_samples([t.sample_id for t in waiting], round_index=round_index)
    lost = [t for t in waiting if t.sample_id not in held]
    if lost:
        with session_scope(engine) as session:
            last = latest_round(session, campaign.id)
            version = last.model_version if last is not None else None
        pushed = annotator.push(lost, model_version=version, round_index=round_index)
        _warn(engine, campaign, annotator, lost, pushed)
        held = {**held, **pushed}
    moved = {t.sample_id: held[t.sample_id] for t in waiting
             if t.sample_id in held and held[t.sample_id] != t.external_task_id}
    if moved:
        with session_scope(engine) as session:
            for selection in session.scalars(select(Selection).where(
                Selection.campaign_id == campaign.id, Selection.sample_id.in_(sorted(moved)),
            )):
                selection.external_task_id = moved[selection.sample_id]
        relinked = len(moved) - sum(t.sample_id in moved for t in lost)
        if relinked:
            log.info("Campaign %r: %d task ids stored again as Label Studio holds them", campaign.name, relinked)
    return [dataclasses.replace(t, external_task_id=held.get(t.sample_id, t.external_task_id)) for t in waiting]


def _warn(engine: Engine, campaign: Campaign, annotator, lost: list[TaskRequest], pushed: dict[int, str]) -> None:
    """One WARNING naming the campaign, the project, how many tasks of which round, and what is gone."""
    samples = sorted(t.sample_id for t in lost)
    with session_scope(engine) as session:
        rounds = session.execute(
            select(Round.index, Selection.sample_id).join(Round, Round.id == Selection.round_id)
            .where(Selection.campaign_id == campaign.id, Selection.sample_id.in_(samples))
        ).all()
        synced = sum(WITHDRAWN_MARK not in external_id for external_id in session.scalars(
            select(Annotation.external_id).where(
                Annotation.campaign_id == campaign.id, Annotation.source == annotator.source,
                Annotation.sample_id.in_(samples),
            )))
    per_round: dict[int, int] = {}
    for index, _ in rounds:
        per_round[index] = per_round.get(index, 0) + 1
    counts = ", ".join(f"{n} of round {index}" for index, n in sorted(per_round.items()))
    where = (f"a new project {annotator.project_title!r} (id {annotator.project_id}), created because none "
             "with that title was left" if annotator.created_project
             else f"project {annotator.project_title!r} (id {annotator.project_id})")
    lost_answers = ("answers given in the lost tasks and never synced cannot come back" +
                    (f"; the {synced} answers of these samples synced before are recorded as deleted, "
                     "as Label Studio no longer holds them" if synced else ""))
    log.warning(
        "Campaign %r: %d tasks still out (%s) were missing in Label Studio at %s; was the project "
        "deleted or Label Studio reset? Pushed them again as %d new tasks into %s; %s.",
        campaign.name, len(lost), counts, annotator.url, len(pushed), where, lost_answers,
    )
