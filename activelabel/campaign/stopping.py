"""When a campaign should stop asking for labels: a budget, a target, a plateau, or an empty pool.

Each rule reads only stored rounds, so every process (CLI, schedule, watch) reaches the same
decision; the round after which a campaign stopped records the rule in ``round.stop_reason``.
"""

from __future__ import annotations

from sqlalchemy import Engine, select

from activelabel.campaign.config import CampaignConfig
from activelabel.storage import Campaign, Round, RoundKind, RoundStatus, session_scope


def stop_reason(config: CampaignConfig, rounds: list[Round], labels_spent: int) -> str | None:
    """The first stopping rule met by the complete ``rounds`` (oldest first), or None.

    - label budget: ``labels_spent >= label_budget`` (labels spent plus samples still out);
    - target accuracy: the newest active round's test accuracy ``>= target_accuracy``;
    - plateau: over the newest ``plateau_rounds`` steps between active rounds, the mean pool
      predictive entropy changed by less than ``plateau_threshold`` nats each time.
    """
    if config.label_budget is not None and labels_spent >= config.label_budget:
        return f"label budget reached: {labels_spent} of {config.label_budget} labels spent"
    active = [r for r in rounds if r.kind == RoundKind.active and r.status == RoundStatus.complete]
    if config.target_accuracy is not None and active and active[-1].test_accuracy is not None:
        if active[-1].test_accuracy >= config.target_accuracy:
            return (f"target accuracy reached: {active[-1].test_accuracy:.3f} >= "
                    f"{config.target_accuracy:.3f} in round {active[-1].index}")
    if config.plateau_threshold is not None:
        values = [r.mean_pool_entropy for r in active if r.mean_pool_entropy is not None]
        window = values[-(config.plateau_rounds + 1):]
        if len(window) == config.plateau_rounds + 1:
            changes = [abs(b - a) for a, b in zip(window, window[1:])]
            if max(changes) < config.plateau_threshold:
                return (f"uncertainty plateau: mean pool entropy changed by less than "
                        f"{config.plateau_threshold:g} over {config.plateau_rounds} rounds "
                        f"(largest change {max(changes):.4f})")
    return None


def check_stop(engine: Engine, campaign_id: int) -> str | None:
    """Apply the stopping rules after the newest complete round; record the reason on it."""
    from activelabel.campaign.steps import labels_committed

    with session_scope(engine) as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        config = CampaignConfig.from_dict(campaign.config)
        rounds = list(session.scalars(select(Round).where(Round.campaign_id == campaign_id).order_by(Round.index)))
        if not rounds or rounds[-1].status != RoundStatus.complete:
            return None
        reason = stop_reason(config, rounds, labels_committed(session, campaign_id, config))
        if reason is None and pool_exhausted(session, campaign_id, config):
            reason = POOL_EXHAUSTED
        if reason:
            rounds[-1].stop_reason = reason
        elif rounds[-1].stop_reason == POOL_EXHAUSTED:
            rounds[-1].stop_reason = None  # new files joined the pool: the campaign goes on
        return reason


POOL_EXHAUSTED = "pool exhausted: every pool sample is labeled or waiting for labels"


def pool_exhausted(session, campaign_id: int, config: CampaignConfig) -> bool:
    """True when a next round would find nothing to select: no pool sample is unlabeled, not
    selected, not a copy and readable (:func:`~activelabel.storage.repository.unlabeled_pool_columns`),
    the evaluation split needs no round, and the pool folder lists no file the campaign lacks.

    Not final: it is evaluated afresh before every round, so files added to an own-data pool
    (``follow_new_files``) let a stopped campaign continue; the next round joins them
    (:func:`~activelabel.campaign.growth.join_before_round`, under the campaign's lease).
    A new file that cannot be opened counts as new (it is looked for again every round).
    """
    from activelabel.campaign.data import list_pool_files
    from activelabel.campaign.steps import next_round_kind
    from activelabel.storage import Sample
    from activelabel.storage.repository import unlabeled_pool_columns

    if len(unlabeled_pool_columns(session, campaign_id)):
        return False
    if next_round_kind(session, campaign_id, config) == RoundKind.evaluation:
        return False
    if config.uses_own_data and config.follow_new_files:
        listed = list_pool_files(config)
        if listed:
            stored = set(session.scalars(select(Sample.uri).where(Sample.campaign_id == campaign_id)))
            if any(uri not in stored for uri in listed):
                return False
    return True
