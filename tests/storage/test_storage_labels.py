"""Majority vote over annotators' labels, worked by hand."""

from __future__ import annotations

import pytest

from activelabel.storage.labels import ResolvedLabel, majority_vote


def test_two_against_one() -> None:
    # "cat" x2, "dog" x1 -> cat wins with 2/3 of 3 votes
    result = majority_vote(["cat", "dog", "cat"])
    assert result == ResolvedLabel("cat", 3, pytest.approx(2 / 3))
    assert result.agreement == pytest.approx(0.6667, abs=1e-4)


def test_tie_goes_to_the_label_voted_first() -> None:
    # 1 vs 1: the first vote decides; agreement 1/2
    assert majority_vote(["dog", "cat"]) == ResolvedLabel("dog", 2, 0.5)
    assert majority_vote(["cat", "dog"]) == ResolvedLabel("cat", 2, 0.5)
    # 2 vs 2: "b" appears first -> b; agreement 2/4
    assert majority_vote(["b", "a", "a", "b"]) == ResolvedLabel("b", 4, 0.5)


def test_tie_only_among_the_leaders() -> None:
    # "x" voted first but has 1 vote; "y" and "z" tie at 2 -> y (first of the leaders); 2/5
    assert majority_vote(["x", "y", "z", "z", "y"]) == ResolvedLabel("y", 5, 0.4)


def test_single_vote() -> None:
    assert majority_vote(["dog"]) == ResolvedLabel("dog", 1, 1.0)


def test_unanimous() -> None:
    assert majority_vote(["a", "a", "a", "a"]) == ResolvedLabel("a", 4, 1.0)


def test_no_votes() -> None:
    with pytest.raises(ValueError, match="zero votes"):
        majority_vote([])
