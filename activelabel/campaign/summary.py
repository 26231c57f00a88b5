"""What a round did, in the figures a user reads in the final table."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from activelabel.storage import Campaign, Round, session_scope


@dataclass(frozen=True)
class RoundSummary:
    index: int
    status: str
    labeled: int | None
    test_accuracy: float | None
    test_nll: float | None
    test_ece: float | None
    mean_selected_score: float | None
    seconds: float
    model_version: str | None

    def describe(self) -> str:
        """One line for logs and progress bars, in the user's words."""
        if self.status != "complete":
            return f"round {self.index} {self.status.replace('_', ' ')}"
        return (
            f"round {self.index} complete · {self.labeled} labels · "
            f"test accuracy {self.test_accuracy:.3f} · {self.seconds:.1f}s"
        )


def _summary(rnd: Round) -> RoundSummary:
    return RoundSummary(
        index=rnd.index,
        status=rnd.status.value,
        labeled=rnd.labeled_count,
        test_accuracy=rnd.test_accuracy,
        test_nll=rnd.test_nll,
        test_ece=rnd.test_ece,
        mean_selected_score=rnd.mean_selected_score,
        seconds=round(sum((rnd.timings or {}).values()), 3),
        model_version=rnd.model_version,
    )


def round_summary(engine: Engine, round_id: int) -> RoundSummary:
    with session_scope(engine) as session:
        rnd = session.get(Round, round_id)
        assert rnd is not None
        return _summary(rnd)


def campaign_summaries(engine: Engine, campaign_name: str) -> list[RoundSummary]:
    with session_scope(engine) as session:
        rounds = session.scalars(
            select(Round).join(Campaign).where(Campaign.name == campaign_name).order_by(Round.index)
        )
        return [_summary(r) for r in rounds]
