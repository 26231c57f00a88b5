"""Which tasks are still out with the annotators: the one rule sync, lost-task recovery and
relocation share, so they never disagree about which tasks an annotator may still answer.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine

from activelabel.annotation import TaskRequest
from activelabel.storage import Selection, session_scope
from activelabel.storage.repository import resolved_labels

__all__ = ["tasks_still_out"]


def tasks_still_out(engine: Engine, campaign_id: int, min_votes: int,
                    tasks: Iterable[TaskRequest] | None = None) -> list[TaskRequest]:
    """The campaign's tasks still out: sent to the annotators (a task id is stored), in any
    round, whose sample's label is not resolved (:func:`~activelabel.storage.repository.resolved_labels`
    with ``min_votes``, the campaign's ``annotations_per_task``).

    Partly answered tasks are still out: fewer than ``min_votes`` distinct annotators gave an
    accepted answer, and a rejected answer (a label outside the label set) is no vote. A seed
    label resolves its sample at once. A sample selected but not pushed yet (no task id) is not
    out: there is no task to read or to change.

    ``tasks``: the campaign's task requests, when the caller has read them already (sync reads
    every sample's); read here otherwise. Kept in their order (round, then rank).
    """
    if tasks is None:
        from activelabel.campaign.steps import _task_requests

        tasks = _task_requests(engine, Selection.campaign_id == campaign_id)
    with session_scope(engine) as session:
        resolved = resolved_labels(session, campaign_id, min_votes)
    return [t for t in tasks if t.external_task_id is not None and t.sample_id not in resolved]
