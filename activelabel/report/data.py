"""What a report shows, read from storage only: rounds, selections, scores, calibration and
the uncertainty decomposition. No model is run.

Images of selected samples come from the campaign's image store (the dataset's own pixels,
read by URI), never from a model. Calibration is the JSON each round stored
(``Round.calibration``, see ``campaign.calibrate``); the decomposition is the per-sample
``Score.total / aleatoric / epistemic`` columns (nats) the round's scoring wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import Engine, and_, case, func, select

from activelabel.campaign.summary import LearnedFrom, yardstick  # noqa: F401  (yardstick: the report's name for it)
from activelabel.campaign.uncertainty_report import PARTS
from activelabel.storage import (
    Campaign, Round, RoundKind, RoundStatus, Sample, Score, Selection, session_scope,
)
from activelabel.storage.repository import campaign_min_votes, resolved_labels


@dataclass(frozen=True)
class RoundRow(LearnedFrom):
    index: int
    kind: str
    labeled: int | None
    accuracy: float | None
    nll: float | None
    ece: float | None
    timings: dict
    # Round.calibration as stored: {"temperature", "validation_size", "before"/"after": {accuracy,
    # nll, brier, ece, bins} or None}; None when the round fitted no temperature.
    calibration: dict | None = None
    # Round.uncertainty: how the pool was scored ({"method", "samples", "mode", "temperature", ...}).
    uncertainty: dict | None = None
    # Round.segmentation_metrics of a segmentation round ({"miou", "per_class_iou", "pixel_accuracy",
    # "pixel_ece", "pixels"}); None for classification rounds and rounds that measured nothing.
    segmentation: dict | None = None
    # Round.training: what the round's training ran ({"epochs", "steps", "batch_size", ...}, see
    # campaign.training_terms); None when no model was trained or the round predates the column.
    training: dict | None = None

    @property
    def trained_on(self) -> int | None:  # type: ignore[override]
        """``training["trained_on"]``: the labels the model learned from (``labeled`` less the
        calibration hold-out); None when not stored (then ``labeled`` stands for it)."""
        value = (self.training or {}).get("trained_on")
        return None if value is None else int(value)

    def calibrated(self, when: str, key: str) -> float | None:
        """``calibration[when][key]`` (``when``: "before" or "after" temperature scaling), or None."""
        measured = (self.calibration or {}).get(when)
        value = None if not measured else measured.get(key)
        return None if value is None else float(value)


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
    # The sample's epistemic uncertainty (BALD, nats) in the round that picked it; None when the
    # round scored without a model (cold start, evaluation).
    epistemic: float | None = None


@dataclass
class CampaignRecord:
    name: str
    strategy: str
    seed: int
    labels: list[str]
    config: dict
    rounds: list[RoundRow]
    picked: list[Picked] = field(default_factory=list)
    campaign_id: int | None = None
    task: str = "classification"  # Campaign.task_kind: "classification" or "segmentation"
    # The latest round when it waits for labels (its model trained and measured, the round not
    # complete): the latest-round sentence names what it measured. None otherwise.
    waiting: RoundRow | None = None

    def segmentation_curve(self, key: str) -> tuple[list[int], list[float]]:
        """(labeled images, ``segmentation_metrics[key]``) of the complete active rounds that
        measured it (``key``: miou, pixel_accuracy or pixel_ece)."""
        points = [(r.labeled, float(r.segmentation[key])) for r in self.rounds
                  if r.kind == RoundKind.active.value and r.labeled is not None and r.segmentation
                  and r.segmentation.get(key) is not None]
        return [p[0] for p in points], [p[1] for p in points]

    def curve(self, metric: str = "accuracy") -> tuple[list[int], list[float]]:
        """(labels, metric) of the complete active rounds that measured it."""
        points = [(r.labeled, getattr(r, metric)) for r in self.rounds
                  if r.kind == RoundKind.active.value and r.labeled is not None and getattr(r, metric) is not None]
        return [p[0] for p in points], [p[1] for p in points]

    def calibration_curve(self, key: str, when: str | None = None) -> tuple[list[int], list[float]]:
        """(labels, value) of the complete active rounds that stored a calibration: the
        ``temperature`` (``when`` None), or ``key`` (accuracy, nll, brier, ece) measured
        ``when`` = "before" or "after" temperature scaling."""
        points = []
        for r in self.rounds:
            if r.kind != RoundKind.active.value or r.labeled is None or not r.calibration:
                continue
            value = r.calibration.get(key) if when is None else r.calibrated(when, key)
            if value is not None:
                points.append((r.labeled, float(value)))
        return [p[0] for p in points], [p[1] for p in points]


def load_campaign(engine: Engine, campaign_id: int) -> CampaignRecord:
    """A campaign's complete rounds and every selection with its resolved label (the majority
    of its accepted annotations, one vote per annotator: ``storage.repository.resolved_labels``
    with the campaign's ``annotations_per_task``; None while it has fewer annotators)."""
    with session_scope(engine) as session:
        campaign = session.get(Campaign, campaign_id)
        rounds = session.scalars(select(Round).where(
            Round.campaign_id == campaign_id, Round.status == RoundStatus.complete).order_by(Round.index)).all()
        all_rounds = session.scalars(select(Round).where(Round.campaign_id == campaign_id)).all()
        index_of = {r.id: r.index for r in all_rounds}
        strategy_of = {r.id: r.strategy for r in all_rounds}
        # The label the campaign trains on and exports: one vote per annotator, as many
        # annotators as annotations_per_task asks (samples short of them count as unlabeled).
        labels = {sample_id: r.label for sample_id, r in
                  resolved_labels(session, campaign_id, campaign_min_votes(campaign)).items()}
        epistemic = {
            (round_id, sample_id): value
            for round_id, sample_id, strategy, value in session.execute(
                select(Score.round_id, Score.sample_id, Score.strategy, Score.epistemic)
                .join(Selection, and_(Selection.round_id == Score.round_id, Selection.sample_id == Score.sample_id))
                .where(Selection.campaign_id == campaign_id)
            )
            if strategy == strategy_of.get(round_id)
        }
        picked = [
            Picked(index_of[s.round_id], s.rank, s.sample_id, uri, s.score, s.predicted_label, labels.get(s.sample_id),
                   epistemic.get((s.round_id, s.sample_id)))
            for s, uri in session.execute(
                select(Selection, Sample.uri).join(Sample, Sample.id == Selection.sample_id)
                .where(Selection.campaign_id == campaign_id).order_by(Selection.round_id, Selection.rank)
            )
        ]
        return CampaignRecord(
            name=campaign.name, strategy=campaign.strategy, seed=int(campaign.config.get("seed", 0)),
            labels=list(campaign.labels), config=dict(campaign.config),
            rounds=[_row(r) for r in rounds],
            picked=picked, campaign_id=campaign_id, task=campaign.task_kind or "classification",
            waiting=next((_row(r) for r in sorted(all_rounds, key=lambda r: r.index)[-1:]
                          if r.status == RoundStatus.waiting_for_labels), None),
        )


def _row(r: Round) -> RoundRow:
    return RoundRow(r.index, r.kind.value, r.labeled_count, r.test_accuracy, r.test_nll, r.test_ece,
                    dict(r.timings or {}), r.calibration, r.uncertainty, r.segmentation_metrics, r.training)


def round_score_values(engine: Engine, campaign_id: int, round_index: int) -> tuple[list[float], list[float]]:
    """(scores of every scored pool sample, scores of the selected ones) of one round."""
    with session_scope(engine) as session:
        rnd = session.scalar(select(Round).where(Round.campaign_id == campaign_id, Round.index == round_index))
        if rnd is None:
            return [], []
        pool = list(session.scalars(select(Score.value).where(Score.round_id == rnd.id, Score.strategy == rnd.strategy)))
        chosen = list(session.scalars(select(Selection.score).where(Selection.round_id == rnd.id)))
    return pool, chosen



@dataclass(frozen=True)
class PartMeans:
    """Mean total / aleatoric / epistemic uncertainty (nats) over ``count`` scored samples."""

    count: int
    total: float
    aleatoric: float
    epistemic: float

    def part(self, name: str) -> float:
        return getattr(self, name)


@dataclass(frozen=True)
class DecompositionMeans:
    """One round's decomposition in brief: over the scored pool and over the selected samples."""

    pool: PartMeans
    selected: PartMeans | None


def decomposition_means(engine: Engine, campaign_id: int) -> dict[int, DecompositionMeans]:
    """Round index -> mean total / aleatoric / epistemic of the scored pool and of the selected
    samples, for every complete round whose scores carry the decomposition (rounds scored without a model
    — cold start, evaluation — are absent). Two grouped SQL aggregates: no score row is loaded."""
    parts = (func.count(), func.avg(Score.total), func.avg(Score.aleatoric), func.avg(Score.epistemic))
    mine = and_(Round.id == Score.round_id, Round.campaign_id == campaign_id, Round.status == RoundStatus.complete,
                Score.strategy == Round.strategy, Score.total.is_not(None))
    with session_scope(engine) as session:
        pool = {index: PartMeans(int(n), float(t), float(a), float(e)) for index, n, t, a, e in session.execute(
            select(Round.index, *parts).select_from(Score).join(Round, mine).group_by(Round.index))}
        chosen = {index: PartMeans(int(n), float(t), float(a), float(e)) for index, n, t, a, e in session.execute(
            select(Round.index, *parts).select_from(Score).join(Round, mine)
            .join(Selection, and_(Selection.round_id == Score.round_id, Selection.sample_id == Score.sample_id))
            .group_by(Round.index))}
    return {index: DecompositionMeans(means, chosen.get(index)) for index, means in sorted(pool.items())}


@dataclass(frozen=True)
class RoundDecomposition:
    """Every scored sample's total / aleatoric / epistemic (nats) in one round: ``pool[part]`` is
    ``[N]`` over the scored pool, ``selected[part]`` ``[K]`` over the round's selected samples."""

    pool: dict[str, np.ndarray]
    selected: dict[str, np.ndarray]

    def percentile(self, part: str) -> float | None:
        """Where the selected samples sit in the pool: the share of the pool (in %) scoring below
        the selected samples' median ``part``; None without selected samples."""
        if not len(self.selected[part]) or not len(self.pool[part]):
            return None
        return float(100.0 * np.mean(self.pool[part] < np.median(self.selected[part])))


def round_decomposition(engine: Engine, campaign_id: int, round_index: int) -> RoundDecomposition | None:
    """The decomposition of every sample round ``round_index`` scored with its model, and of the
    ones it selected; None when the round stored none (no model: cold start, evaluation)."""
    with session_scope(engine) as session:
        rnd = session.scalar(select(Round).where(Round.campaign_id == campaign_id, Round.index == round_index))
        if rnd is None:
            return None
        rows = session.execute(
            select(Score.sample_id, Score.total, Score.aleatoric, Score.epistemic)
            .where(Score.round_id == rnd.id, Score.strategy == rnd.strategy, Score.total.is_not(None))
        ).all()
        chosen = set(session.scalars(select(Selection.sample_id).where(Selection.round_id == rnd.id)))
    if not rows:
        return None
    values = np.array([r[1:] for r in rows], dtype=np.float64)
    picked = np.array([r[0] in chosen for r in rows], dtype=bool)
    return RoundDecomposition({p: values[:, i] for i, p in enumerate(PARTS)},
                              {p: values[picked, i] for i, p in enumerate(PARTS)})


@dataclass(frozen=True)
class RoundDensity:
    """One round's feature density (DDU): ``pool`` ``[N]`` and ``selected`` ``[K]`` are the log
    densities ``log q(z)`` (nats; lower = less like the labeled set) of every sample the round
    scored and of those it selected; ``pool_flagged`` / ``selected_flagged`` count the ones
    stored as out of distribution (``score.ood``); ``summary`` is ``round.uncertainty["density"]``
    (``threshold``, ``percentile``, ``labeled``, ``dim``, ``flagged``, …)."""

    pool: np.ndarray
    selected: np.ndarray
    pool_flagged: int
    selected_flagged: int
    summary: dict

    @property
    def threshold(self) -> float:
        return float(self.summary["threshold"])


def round_density(engine: Engine, campaign_id: int, round_index: int) -> RoundDensity | None:
    """The stored log densities and OOD flags of round ``round_index``; None when it stored
    none (no model, a segmentation round, or scored before densities were stored)."""
    with session_scope(engine) as session:
        rnd = session.scalar(select(Round).where(Round.campaign_id == campaign_id, Round.index == round_index))
        if rnd is None or not (rnd.uncertainty or {}).get("density"):
            return None
        rows = session.execute(
            select(Score.sample_id, Score.log_density, Score.ood)
            .where(Score.round_id == rnd.id, Score.strategy == rnd.strategy, Score.log_density.is_not(None))
        ).all()
        chosen = set(session.scalars(select(Selection.sample_id).where(Selection.round_id == rnd.id)))
        summary = dict(rnd.uncertainty["density"])
    if not rows:
        return None
    values = np.array([r[1] for r in rows], dtype=np.float64)
    ood = np.array([bool(r[2]) for r in rows])
    picked = np.array([r[0] in chosen for r in rows], dtype=bool)
    return RoundDensity(values, values[picked], int(ood.sum()), int(ood[picked].sum()), summary)


@dataclass(frozen=True)
class DensityCounts:
    """A round's OOD counts in brief: samples scored with a log density and how many were
    flagged, and the same over the samples it selected."""

    scored: int
    flagged: int
    selected: int
    selected_flagged: int


def density_counts(engine: Engine, campaign_id: int) -> dict[int, DensityCounts]:
    """Round index -> OOD counts, for every complete round that stored a density
    (``round.uncertainty["density"]``) and whose scores carry log densities. Two grouped SQL
    aggregates: no score row is loaded."""
    flagged = func.sum(case((Score.ood.is_(True), 1), else_=0))
    mine = and_(Round.id == Score.round_id, Round.campaign_id == campaign_id, Round.status == RoundStatus.complete,
                Score.strategy == Round.strategy, Score.log_density.is_not(None))
    with session_scope(engine) as session:
        pool = dict((index, (int(n), int(f or 0))) for index, n, f in session.execute(
            select(Round.index, func.count(), flagged).select_from(Score).join(Round, mine).group_by(Round.index)))
        chosen = dict((index, (int(n), int(f or 0))) for index, n, f in session.execute(
            select(Round.index, func.count(), flagged).select_from(Score).join(Round, mine)
            .join(Selection, and_(Selection.round_id == Score.round_id, Selection.sample_id == Score.sample_id))
            .group_by(Round.index)))
    fitted = density_summaries(engine, campaign_id)
    return {index: DensityCounts(n, f, *chosen.get(index, (0, 0))) for index, (n, f) in sorted(pool.items())
            if index in fitted}


def density_summaries(engine: Engine, campaign_id: int) -> dict[int, dict]:
    """Round index -> the round's stored density summary (``round.uncertainty["density"]``),
    for the rounds that stored one."""
    with session_scope(engine) as session:
        return {index: dict(how["density"]) for index, how in session.execute(
            select(Round.index, Round.uncertainty).where(Round.campaign_id == campaign_id))
            if (how or {}).get("density")}
