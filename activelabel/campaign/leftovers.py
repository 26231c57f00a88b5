"""Samples of earlier, completed rounds that are still out with the annotators, in words.

A round completes at ``min_new_labels`` (or, evaluation rounds aside, when enough of its
samples resolve); its other samples stay out and go along with every later round's tasks until
they resolve. Usually they are only late. But with exactly as many annotators as answers per
task, one rejected answer leaves a task that every annotator has already answered: Label
Studio serves it to none of them again, and it never resolves unless someone acts. Trial 16
F2: such a sample (then a skip, which stored nothing) stayed out through four more rounds, and
``status``, ``status --round`` and ``sync`` never named it. A sample settled by skips is *set
aside* (:mod:`activelabel.campaign.skips`) and named apart, as skipped, with who skipped it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from activelabel.campaign.skips import SetAside, campaign_set_aside, set_aside_words
from activelabel.campaign.still_out import tasks_still_out
from activelabel.campaign.summary import counted
from activelabel.storage import Annotation, AnnotationStatus, Round, RoundStatus, Selection, session_scope
from activelabel.storage.repository import campaign_min_votes, require_campaign

#: Samples named one by one; more are counted.
NAMED = 5


@dataclass(frozen=True)
class LeftOver:
    """One sample of a completed round still out: its task, the round that chose it and the
    distinct annotators whose accepted answer is stored (``needed`` resolve it)."""

    sample_id: int
    task_id: str
    round_index: int
    accepted: int
    needed: int

    def describe(self) -> str:
        return (f"sample {self.sample_id} (round {self.round_index}, task {self.task_id}): "
                f"{self.accepted} of {self.needed} accepted answer{'s' if self.needed != 1 else ''}")


@dataclass(frozen=True)
class EarlierRoundsStillOut:
    """The campaign's samples of completed rounds still out, oldest round first: ``samples``
    that may still resolve, and those ``set_aside`` by skips (their tasks are out too, but no
    annotator is left to answer them)."""

    samples: list[LeftOver]
    set_aside: list[SetAside] = field(default_factory=list)

    def describe(self) -> str | None:
        """One paragraph for ``activelabel status``; None when no such sample is out."""
        still = self._still_out()
        aside = set_aside_words(self.set_aside)
        if still is None or aside is None:
            return still or aside
        return f"{still} {aside}"

    def _still_out(self) -> str | None:
        if not self.samples:
            return None
        named = "; ".join(s.describe() for s in self.samples[:NAMED])
        more = f"; and {len(self.samples) - NAMED} more" if len(self.samples) > NAMED else ""
        short = [s for s in self.samples if s.accepted > 0]
        advice = ("they go along with every round's tasks until they resolve. A task that every annotator has "
                  "answered or skipped is not served to them again: ask another annotator to answer it, or the "
                  "one who skipped to answer after all")
        if not short:
            advice = "they go along with every round's tasks until they resolve"
        return (f"{counted(len(self.samples), 'sample')} of earlier, completed rounds "
                f"{'is' if len(self.samples) == 1 else 'are'} still out with the annotators: {named}{more}; "
                f"{advice}.")


def earlier_rounds_still_out(engine: Engine, campaign_name: str) -> EarlierRoundsStillOut:
    """The campaign's tasks still out (:func:`~activelabel.campaign.still_out.tasks_still_out`, the
    rule sync and recovery share) whose round is complete, those set aside by skips apart.
    Raises ``CampaignStateError`` for an unknown campaign."""
    with session_scope(engine) as session:
        campaign = require_campaign(session, campaign_name)
        campaign_id, needed = campaign.id, campaign_min_votes(campaign)
        round_of = dict(session.execute(
            select(Selection.sample_id, Round.index).join(Round, Round.id == Selection.round_id)
            .where(Selection.campaign_id == campaign_id, Round.status == RoundStatus.complete)).all())
    aside = [s for s in campaign_set_aside(engine, campaign_name) if s.sample_id in round_of]
    apart = {s.sample_id for s in aside}
    out = [t for t in tasks_still_out(engine, campaign_id, needed) if t.sample_id in round_of
           and t.sample_id not in apart]
    accepted: dict[int, set[str]] = {}
    if out:
        with session_scope(engine) as session:
            for sample_id, annotator in session.execute(
                    select(Annotation.sample_id, Annotation.annotator)
                    .where(Annotation.campaign_id == campaign_id, Annotation.status == AnnotationStatus.accepted,
                           Annotation.sample_id.in_([t.sample_id for t in out]))):
                accepted.setdefault(sample_id, set()).add(annotator)
    return EarlierRoundsStillOut([
        LeftOver(t.sample_id, str(t.external_task_id), round_of[t.sample_id], len(accepted.get(t.sample_id, ())),
                 needed) for t in out], aside)
