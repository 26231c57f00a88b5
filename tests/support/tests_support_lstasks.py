"""Label Studio tasks of a campaign's rounds, and answering them as an annotator would."""

from __future__ import annotations

from sqlalchemy import select

from activelabel.storage import Round, Sample, Selection, session_scope


def answer(ls_client, task_id: int, label: str) -> None:
    """One choices annotation on a task, by the client's user."""
    result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
    ls_client.annotations.create(id=task_id, result=result)


def tasks_of_round(engine, index: int) -> dict[str, int]:
    """uri -> Label Studio task id of the samples a round sent out."""
    with session_scope(engine) as session:
        rows = session.execute(
            select(Sample.uri, Selection.external_task_id).join(Selection, Selection.sample_id == Sample.id)
            .join(Round, Round.id == Selection.round_id).where(Round.index == index)
        ).all()
    assert all(task for _, task in rows)
    return {uri: int(task) for uri, task in rows}
