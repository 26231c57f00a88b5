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
