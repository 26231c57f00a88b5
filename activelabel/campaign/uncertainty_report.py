"""What a round's scoring said about the pool: the distribution of each uncertainty part and
the round's calibration, read from storage only (``activelabel status CAMPAIGN --round N``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, select

from activelabel.errors import CampaignStateError
from activelabel.storage import Round, Score, session_scope
from activelabel.storage.repository import require_campaign

PARTS = ("total", "aleatoric", "epistemic")


def _distribution(part: str, values: np.ndarray) -> Distribution:
    quantiles = np.quantile(values, [0, 0.25, 0.5, 0.75, 1])
    return Distribution(part, len(values), *(float(q) for q in quantiles), float(values.mean()))


@dataclass(frozen=True)
class Distribution:
    """Summary of one part over the scored pool, in nats (``log density``: higher = more familiar)."""

    part: str
    count: int
    minimum: float
    q1: float
    median: float
    q3: float
    maximum: float
    mean: float


@dataclass(frozen=True)
class RoundUncertainty:
    index: int
    kind: str
    strategy: str
    distributions: list[Distribution]  # empty when the round scored without a model
    uncertainty: dict | None
    calibration: dict | None


def round_uncertainty(engine: Engine, campaign: str, index: int) -> RoundUncertainty:
    """The pool's total / aleatoric / epistemic (and feature log density) distribution in round
    ``index`` of ``campaign``.

    Raises :class:`~activelabel.errors.CampaignStateError` when the campaign or round does not exist.
    """
    with session_scope(engine) as session:
        campaign_id = require_campaign(session, campaign).id
        rnd = session.scalar(select(Round).where(Round.campaign_id == campaign_id, Round.index == index))
        if rnd is None:
            raise CampaignStateError(
                f"campaign {campaign!r} has no round {index}; `activelabel status {campaign}` lists its rounds"
            )
        rows = session.execute(
            select(Score.total, Score.aleatoric, Score.epistemic)
            .where(Score.round_id == rnd.id, Score.strategy == rnd.strategy, Score.total.is_not(None))
        ).all()
        densities = session.scalars(
            select(Score.log_density)
            .where(Score.round_id == rnd.id, Score.strategy == rnd.strategy, Score.log_density.is_not(None))
        ).all()
        values = np.array(rows, dtype=np.float64).reshape(-1, 3)
        distributions = [_distribution(part, values[:, i]) for i, part in enumerate(PARTS)] if len(values) else []
        if densities:
            distributions.append(_distribution("log density", np.array(densities, dtype=np.float64)))
        return RoundUncertainty(rnd.index, rnd.kind.value, rnd.strategy, distributions, rnd.uncertainty, rnd.calibration)
