"""Several annotators per task: how far they agreed, and which samples they resolved without a
majority (a "split decision", :func:`activelabel.storage.labels.split_decision`).

The figures are derived from the stored annotations on each call, with the same votes and the
same majority as the labels trained on (``repository.resolved_labels``), so ``status``, the
report, the export's ``agreement`` column and sync's warning never disagree. They apply to
classification campaigns with ``annotations_per_task`` above 1; segmentation campaigns show
their masks' agreement (mean pairwise IoU) in their own tables.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from activelabel.campaign.summary import counted
from activelabel.storage import Annotation, AnnotationStatus, Campaign, Round, Sample, Selection, session_scope
from activelabel.storage.labels import ResolvedLabel, split_decision
from activelabel.storage.repository import campaign_min_votes, one_vote_per_annotator, resolved_labels

#: Split samples named in sync's warning (the rest are counted; ``status --round N`` lists all).
WARN_LISTED = 5


@dataclass(frozen=True)
class SampleAgreement:
    """A resolved sample of a round: its answers, one per annotator as ``(annotator, label)`` in
    the order they first answered (the order the tie rule reads), and the resolved label."""

    sample_id: int
    uri: str
    split: str
    round_index: int
    task: str | None  # the Label Studio task id (None: never sent)
    answers: tuple[tuple[str, str], ...]
    resolved: ResolvedLabel

    @property
    def split_decision(self) -> bool:
        return split_decision(self.resolved)

    def answers_text(self) -> str:
        """The answers as the annotators gave them: ``"7, 1, 4"``."""
        return ", ".join(label for _, label in self.answers)

    def cells(self) -> list[str]:
        """The :data:`SPLIT_HEADER` cells, as ``status --round N`` and the report list a split sample."""
        return [self.uri, self.task or "", self.split, self.answers_text(), self.resolved.label,
                f"{self.resolved.agreement:.3f}"]

    def describe(self) -> str:
        """``"img0056.png (task 3): 7, 1, 4 -> 7"``, as sync's warning names it."""
        task = "" if self.task is None else f" (task {self.task})"
        return f"{self.uri}{task}: {self.answers_text()} -> {self.resolved.label}"


def several_annotators(campaign: Campaign) -> bool:
    """Whether agreement applies: a classification campaign with ``annotations_per_task`` > 1."""
    return campaign.task_kind != "segmentation" and campaign_min_votes(campaign) > 1


def round_samples(session: Session, campaign: Campaign) -> list[SampleAgreement]:
    """The campaign's resolved samples that a round selected, in round then sample order."""
    resolved = resolved_labels(session, campaign.id, campaign_min_votes(campaign))
    rows = session.execute(
        select(Annotation.sample_id, Annotation.annotator, Annotation.label, Annotation.updated_at,
               Annotation.created_at, Annotation.id)
        .where(Annotation.campaign_id == campaign.id, Annotation.status == AnnotationStatus.accepted)
    )
    answers = one_vote_per_annotator((s, who, (who, label), u, c, i) for s, who, label, u, c, i in rows)
    picked = session.execute(
        select(Selection.sample_id, Selection.external_task_id, Sample.uri, Sample.split, Round.index)
        .join(Sample, Sample.id == Selection.sample_id)
        .join(Round, Round.id == Selection.round_id)
        .where(Selection.campaign_id == campaign.id)
        .order_by(Round.index, Selection.sample_id)
    ).all()
    return [
        SampleAgreement(sample_id, uri, split.value, index, task, tuple(answers[sample_id]), resolved[sample_id])
        for sample_id, task, uri, split, index in picked if sample_id in resolved
    ]


@dataclass(frozen=True)
class RoundAgreement:
    """A round's ``resolved`` samples, their mean ``agreement`` (None: none resolved yet) and
    how many were ``splits`` (split decisions), ``evaluation_splits`` of them in the evaluation split."""

    index: int
    resolved: int
    agreement: float | None
    splits: int
    evaluation_splits: int

    def cells(self) -> list[str]:
        """``round``, ``resolved``, ``agreement``, ``split decisions`` cells, as status and the report show them."""
        agreement = "" if self.agreement is None else f"{self.agreement:.3f}"
        splits = str(self.splits) + (f" ({self.evaluation_splits} evaluation)" if self.evaluation_splits else "")
        return [str(self.index), str(self.resolved), agreement, splits]


AGREEMENT_HEADER = ["round", "resolved", "agreement", "split decisions"]
#: The columns of a split sample (:meth:`SampleAgreement.cells`).
SPLIT_HEADER = ["sample", "task", "split", "answers", "resolved", "agreement"]


def per_round(samples: list[SampleAgreement], indexes: list[int]) -> list[RoundAgreement]:
    """One :class:`RoundAgreement` per round of ``indexes`` (rounds without a resolved sample included)."""
    by_round: dict[int, list[SampleAgreement]] = defaultdict(list)
    for s in samples:
        by_round[s.round_index].append(s)
    out = []
    for index in indexes:
        mine = by_round.get(index, [])
        splits = [s for s in mine if s.split_decision]
        out.append(RoundAgreement(
            index, len(mine), sum(s.resolved.agreement for s in mine) / len(mine) if mine else None,
            len(splits), sum(s.split == "evaluation" for s in splits)))
    return out


@dataclass(frozen=True)
class AnnotatorAgreement:
    """How often ``annotator``'s answers on resolved samples matched the resolved label."""

    annotator: str
    answers: int
    agreeing: int

    @property
    def share(self) -> float:
        return self.agreeing / self.answers


def per_annotator(samples: list[SampleAgreement]) -> list[AnnotatorAgreement]:
    """Each annotator's answers on the resolved samples and how many matched the resolved label, by name."""
    answers: dict[str, int] = defaultdict(int)
    agreeing: dict[str, int] = defaultdict(int)
    for s in samples:
        for who, label in s.answers:
            answers[who] += 1
            agreeing[who] += label == s.resolved.label
    return [AnnotatorAgreement(who, answers[who], agreeing[who]) for who in sorted(answers)]


@dataclass(frozen=True)
class CampaignAgreement:
    """What status and the report show of a campaign with several annotators per task."""

    needed: int  # annotations_per_task
    rounds: list[RoundAgreement]
    annotators: list[AnnotatorAgreement]
    splits: list[SampleAgreement]


def campaign_agreement(engine: Engine, campaign_name: str) -> CampaignAgreement | None:
    """The campaign's agreement per round and per annotator and its split decisions; None when
    agreement does not apply (:func:`several_annotators`). Raises ``CampaignStateError`` for an
    unknown campaign."""
    from activelabel.storage.repository import require_campaign

    with session_scope(engine) as session:
        campaign = require_campaign(session, campaign_name)
        if not several_annotators(campaign):
            return None
        samples = round_samples(session, campaign)
        indexes = list(session.scalars(select(Round.index).where(Round.campaign_id == campaign.id)
                                       .order_by(Round.index)))
        needed = campaign_min_votes(campaign)
    return CampaignAgreement(needed, per_round(samples, indexes), per_annotator(samples),
                             [s for s in samples if s.split_decision])


class SplitWatch:
    """Sync's watch for new split decisions: :meth:`start` before the answers are stored notes
    the split decisions already there, :meth:`warn` after logs one warning per round that got
    new ones (a no-op for campaigns where agreement does not apply)."""

    def __init__(self, engine: Engine, campaign_id: int, known: set[int] | None) -> None:
        self.engine, self.campaign_id, self.known = engine, campaign_id, known

    @classmethod
    def start(cls, engine: Engine, campaign_id: int) -> SplitWatch:
        with session_scope(engine) as session:
            campaign = session.get(Campaign, campaign_id)
            if campaign is None or not several_annotators(campaign):
                return cls(engine, campaign_id, None)
            return cls(engine, campaign_id, {s.sample_id for s in round_samples(session, campaign)
                                             if s.split_decision})

    def new_splits(self) -> list[SampleAgreement]:
        """Split decisions now stored that were not when the watch started."""
        if self.known is None:
            return []
        with session_scope(self.engine) as session:
            campaign = session.get(Campaign, self.campaign_id)
            return [s for s in round_samples(session, campaign) if s.split_decision and s.sample_id not in self.known]

    def warn(self, log, campaign_name: str) -> list[str]:
        """Log (``log.warning``) and return one message per round with new split decisions."""
        by_round: dict[int, list[SampleAgreement]] = defaultdict(list)
        for s in self.new_splits():
            by_round[s.round_index].append(s)
        messages = [split_warning(index, splits, campaign_name) for index, splits in sorted(by_round.items())]
        for message in messages:
            log.warning("%s", message)
        return messages


def split_warning(round_index: int, splits: list[SampleAgreement], campaign_name: str) -> str:
    """Sync's warning about ``splits``, the round's samples just resolved without a majority."""
    evaluation = sum(s.split == "evaluation" for s in splits)
    where = (f", {evaluation} of them in the evaluation split (the yardstick every round is measured on)"
             if evaluation else "")
    listed = "; ".join(s.describe() for s in splits[:WARN_LISTED])
    more = f"; and {len(splits) - WARN_LISTED} more" if len(splits) > WARN_LISTED else ""
    them = "it" if len(splits) == 1 else "them"
    return (f"Round {round_index}: {counted(len(splits), 'sample')} resolved by a split decision (no label has "
            f"more than half of the answers; a tie goes to the first answer's label){where}: {listed}{more}. "
            f"Have another annotator review {them} in Label Studio: an edit there is followed by the next sync. "
            f"`activelabel status {campaign_name} --round {round_index}` lists {them}.")
