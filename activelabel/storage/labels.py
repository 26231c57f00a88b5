"""Resolve several annotators' votes into one label, with how much they agreed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class ResolvedLabel:
    label: str
    votes: int
    agreement: float  # share of votes for the winning label, in (0, 1]


def majority_vote(votes: list[str]) -> ResolvedLabel:
    """Most frequent label; a tie goes to the label voted first (annotations in arrival order)."""
    if not votes:
        raise ValueError("cannot resolve a label from zero votes")
    counts = Counter(votes)
    best = max(counts.values())
    winner = next(v for v in votes if counts[v] == best)
    return ResolvedLabel(winner, len(votes), best / len(votes))


def split_decision(resolved: ResolvedLabel) -> bool:
    """Whether ``resolved`` was decided without a strict majority: its winning label holds at
    most half of its votes (``2 × winning votes ≤ votes``).

    That covers every tie the tie rule above settles by answer order (1–1, 2–2, three different
    answers such as 7 / 1 / 4) and a plurality short of a majority (2 of 4 against 1 and 1): the
    label then rests on who answered first, not on the annotators agreeing, so sync warns about
    it and ``status`` and the report count it. A single vote (one annotator per task, a seed
    label) is never a split decision, and 2 of 3 is a majority.
    """
    winning = round(resolved.agreement * resolved.votes)
    return resolved.votes > 1 and 2 * winning <= resolved.votes
