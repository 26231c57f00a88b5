"""Drive a campaign's rounds step by step, without Prefect (the flows wrap exactly these steps)."""

from __future__ import annotations

from activelabel.campaign import steps

UP_TO_PUSH = (steps.train_step, steps.score_step, steps.select_step, steps.push_step)


def run_round(engine, campaign_id: int, *, sync: bool = True) -> int:
    """Start (or resume) the campaign's round and run its steps; without ``sync`` it stops once
    the selection is with the annotators. Returns the round's id."""
    round_id = steps.start_round(engine, campaign_id)
    for step in (*UP_TO_PUSH, steps.sync_step) if sync else UP_TO_PUSH:
        step(engine, round_id)
    return round_id


def run_rounds(engine, campaign_id: int, rounds: int) -> None:
    for _ in range(rounds):
        run_round(engine, campaign_id)
