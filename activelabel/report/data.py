"""What a report shows, read from storage only: rounds, selections, scores. No model is run.

Images of selected samples come from the campaign's image store (the dataset's own pixels,
read by URI), never from a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, select

from activelabel.storage import (
    Annotation, AnnotationStatus, Campaign, Round, RoundKind, RoundStatus, Sample, Score, Selection,
    session_scope,
)


@dataclass(frozen=True)
class RoundRow:
    index: int
    kind: str
    labeled: int | None
    accuracy: float | None
    nll: float | None
    ece: float | None
    timings: dict


@dataclass(frozen=True)
class Picked:
    """A selected sample: where it ranked, its score, the model's guess and its label."""

    round_index: int
    rank: int
    sample_id: int
    uri: str
    score: float
    predicted: str
    label: str | None


@dataclass
class CampaignRecord:
    name: str
    strategy: str
    seed: int
    labels: list[str]
    config: dict
    rounds: list[RoundRow]
    picked: list[Picked] = field(default_factory=list)

    def curve(self, metric: str = "accuracy") -> tuple[list[int], list[float]]:
        """(labels, metric) of the complete active rounds that measured it."""
        points = [(r.labeled, getattr(r, metric)) for r in self.rounds
                  if r.kind == RoundKind.active.value and r.labeled is not None and getattr(r, metric) is not None]
        return [p[0] for p in points], [p[1] for p in points]


def load_campaign(engine: Engine, campaign_id: int) -> CampaignRecord:
    """A campaign's complete rounds and every selection with its resolved label (accepted
    annotations; the first one when several annotators answered)."""
    with session_scope(engine) as session:
        campaign = session.get(Campaign, campaign_id)
        rounds = session.scalars(select(Round).where(
            Round.campaign_id == campaign_id, Round.status == RoundStatus.complete).order_by(Round.index)).all()
        index_of = {r.id: r.index for r in session.scalars(select(Round).where(Round.campaign_id == campaign_id))}
        labels: dict[int, str] = {}
        for sample_id, label in session.execute(
            select(Annotation.sample_id, Annotation.label).where(
                Annotation.campaign_id == campaign_id, Annotation.status == AnnotationStatus.accepted
            ).order_by(Annotation.id)
        ):
            labels.setdefault(sample_id, label)
        picked = [
            Picked(index_of[s.round_id], s.rank, s.sample_id, uri, s.score, s.predicted_label, labels.get(s.sample_id))
            for s, uri in session.execute(
                select(Selection, Sample.uri).join(Sample, Sample.id == Selection.sample_id)
                .where(Selection.campaign_id == campaign_id).order_by(Selection.round_id, Selection.rank)
            )
        ]
        return CampaignRecord(
            name=campaign.name, strategy=campaign.strategy, seed=int(campaign.config.get("seed", 0)),
            labels=list(campaign.labels), config=dict(campaign.config),
            rounds=[RoundRow(r.index, r.kind.value, r.labeled_count, r.test_accuracy, r.test_nll, r.test_ece,
                             dict(r.timings or {})) for r in rounds],
            picked=picked,
        )


def round_score_values(engine: Engine, campaign_id: int, round_index: int) -> tuple[list[float], list[float]]:
    """(scores of every scored pool sample, scores of the selected ones) of one round."""
    with session_scope(engine) as session:
        rnd = session.scalar(select(Round).where(Round.campaign_id == campaign_id, Round.index == round_index))
        if rnd is None:
            return [], []
        pool = list(session.scalars(select(Score.value).where(Score.round_id == rnd.id, Score.strategy == rnd.strategy)))
        chosen = list(session.scalars(select(Selection.score).where(Selection.round_id == rnd.id)))
    return pool, chosen
