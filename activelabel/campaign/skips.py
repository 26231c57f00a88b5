"""Samples set aside by skips, in words: which, in which round and task, skipped by whom, and
what to do.

The rule is :func:`~activelabel.storage.repository.set_aside_samples` (a sample not resolved,
skipped by one annotator at least, and answered or skipped by as many annotators as a task
needs). No round waits for such a sample and activelabel never offers it again, but its task
stays in Label Studio: an answer given there later still labels it. ``status`` (the waiting
round's line, the earlier rounds' leftovers, ``--round N``) names them through here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from activelabel.storage import Annotation, AnnotationStatus, Round, Selection, session_scope
from activelabel.storage.repository import campaign_min_votes, require_campaign, set_aside_samples

__all__ = ["NAMED", "SetAside", "advice", "campaign_set_aside", "round_skips", "set_aside_words"]

#: Set-aside samples named one by one; more are counted.
NAMED = 5


def advice(n: int) -> str:
    """What to do about ``n`` set-aside samples, after their description."""
    if n == 1:
        return "answer it in Label Studio's Data Manager to label it after all; it is not offered again by activelabel"
    return ("answer them in Label Studio's Data Manager to label them after all; they are not offered again by "
            "activelabel")


@dataclass(frozen=True)
class SetAside:
    """One sample set aside by skips: its round, its task (None: never pushed) and the
    annotators who skipped it, as stored (Label Studio's user emails)."""

    sample_id: int
    round_index: int
    task_id: str | None
    skipped_by: tuple[str, ...]

    def describe(self) -> str:
        task = "" if self.task_id is None else f", task {self.task_id}"
        return f"sample {self.sample_id} (round {self.round_index}{task}) skipped by {', '.join(self.skipped_by)}"


def set_aside_words(samples: list[SetAside]) -> str | None:
    """One sentence naming ``samples`` (the first :data:`NAMED`) and the :func:`advice`; None
    when there are none."""
    if not samples:
        return None
    from activelabel.campaign.summary import counted

    named = "; ".join(s.describe() for s in samples[:NAMED])
    more = f"; and {len(samples) - NAMED} more" if len(samples) > NAMED else ""
    return (f"{counted(len(samples), 'sample')} set aside (skipped, and no annotator left to answer): "
            f"{named}{more}; {advice(len(samples))}.")


def campaign_set_aside(engine: Engine, campaign_name: str, aside: dict[int, list[str]] | None = None) -> list[SetAside]:
    """The campaign's samples set aside by skips, by round then sample. ``aside``: the
    :func:`~activelabel.storage.repository.set_aside_samples` map, when the caller has read it
    already. Raises ``CampaignStateError`` for an unknown campaign."""
    with session_scope(engine) as session:
        campaign = require_campaign(session, campaign_name)
        if aside is None:
            aside = set_aside_samples(session, campaign.id, campaign_min_votes(campaign))
        if not aside:
            return []
        picked = session.execute(
            select(Selection.sample_id, Round.index, Selection.external_task_id)
            .join(Round, Round.id == Selection.round_id)
            .where(Selection.campaign_id == campaign.id, Selection.sample_id.in_(list(aside)))
        ).all()
    return sorted((SetAside(sample_id, index, task, tuple(aside[sample_id])) for sample_id, index, task in picked),
                  key=lambda s: (s.round_index, s.sample_id))


def round_skips(engine: Engine, campaign_name: str, index: int) -> tuple[int, list[SetAside]]:
    """Round ``index``'s skips for ``status --round``: how many of its samples hold a current
    skip (an annotator's latest annotation), and those set aside."""
    from activelabel.storage.repository import one_vote_per_annotator

    with session_scope(engine) as session:
        campaign = require_campaign(session, campaign_name)
        mine = set(session.scalars(
            select(Selection.sample_id).join(Round, Round.id == Selection.round_id)
            .where(Selection.campaign_id == campaign.id, Round.index == index)))
        rows = session.execute(
            select(Annotation.sample_id, Annotation.annotator, Annotation.status, Annotation.updated_at,
                   Annotation.created_at, Annotation.id)
            .where(Annotation.campaign_id == campaign.id, Annotation.sample_id.in_(mine))
        ).all() if mine else []
    votes = one_vote_per_annotator(rows)
    skipped = sum(AnnotationStatus.skipped in current for current in votes.values())
    return skipped, [s for s in campaign_set_aside(engine, campaign_name) if s.round_index == index]
