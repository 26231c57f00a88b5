"""How good and how calibrated a model is on held-out data: accuracy, NLL, Brier, ECE, AUROC.

Inputs are predictive probabilities ``probs`` ``[N, C]`` (average an ``[S, N, C]`` tensor over S
first) and integer ``targets`` ``[N]``. Empty inputs give NaN. numpy only.

References: Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of Modern Neural Networks"
(ECE with equal-width confidence bins, reliability diagrams); Brier 1950.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

_EPS = 1e-12


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    nll: float
    ece: float


def accuracy(probs: np.ndarray, targets: np.ndarray) -> float:
    """Fraction of samples whose most probable class is the target (``probs`` is ``[N, C]``)."""
    if len(targets) == 0:
        return float("nan")
    return float(np.mean(np.argmax(probs, axis=1) == targets))


def negative_log_likelihood(probs: np.ndarray, targets: np.ndarray) -> float:
    if len(targets) == 0:
        return float("nan")
    picked = probs[np.arange(len(targets)), targets]
    return float(-np.mean(np.log(np.clip(picked, _EPS, 1.0))))


class ReliabilityBin(NamedTuple):
    """One bin of a reliability diagram: confidences in ``(lower, upper]`` (the first bin also
    holds 0). ``confidence`` and ``accuracy`` are the bin's means (NaN when ``count == 0``)."""

    lower: float
    upper: float
    confidence: float
    accuracy: float
    count: int


def reliability_bins(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> list[ReliabilityBin]:
    """Reliability-diagram data: ``bins`` equal-width confidence bins over [0, 1] (Guo et al. 2017).

    Confidence is ``max_c probs``, correctness is ``argmax == target``. Every bin is returned,
    empty ones with count 0 and NaN means, so the counts always sum to ``N``.
    Raises ``ValueError`` when ``bins < 1``.
    """
    if bins < 1:
        raise ValueError(f"bins must be a positive integer; got {bins}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    if len(targets) == 0:
        return [ReliabilityBin(float(edges[b]), float(edges[b + 1]), float("nan"), float("nan"), 0)
                for b in range(bins)]
    confidence = probs.max(axis=1)
    correct = np.argmax(probs, axis=1) == targets
    # Bin i holds confidences in (edges[i], edges[i+1]]; confidence 0 falls in the first bin.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        count = int(mask.sum())
        conf = float(confidence[mask].mean()) if count else float("nan")
        acc = float(correct[mask].mean()) if count else float("nan")
        out.append(ReliabilityBin(float(edges[b]), float(edges[b + 1]), conf, acc, count))
    return out


def ece_from_bins(bins: list[ReliabilityBin]) -> float:
    """ECE ``sum_b (n_b / N) |acc_b - conf_b|`` from reliability bins (NaN when they are empty)."""
    total = sum(b.count for b in bins)
    if total == 0:
        return float("nan")
    return float(sum(b.count / total * abs(b.accuracy - b.confidence) for b in bins if b.count))


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    """Confidence-vs-accuracy gap averaged over equal-width confidence bins (Guo et al. 2017)."""
    if len(targets) == 0:
        return float("nan")
    return ece_from_bins(reliability_bins(probs, targets, bins))


def brier_score(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean over samples of ``sum_c (p_c - 1[c = target])^2``: range [0, 2], 0 is perfect.

    A proper scoring rule (Brier 1950): unlike ECE it rewards sharpness as well as calibration.
    """
    if len(targets) == 0:
        return float("nan")
    onehot = np.zeros_like(probs, dtype=np.float64)
    onehot[np.arange(len(targets)), targets] = 1.0
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def auroc(negative_scores: np.ndarray, positive_scores: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties count 1/2.

    Used for out-of-distribution detection with the OOD inputs as positives and scores
    oriented "higher = more unusual" (e.g. ``-log density``, entropy, ``1 - max softmax``).
    Exact Mann-Whitney statistic from average ranks, ``O((n + m) log(n + m))``. NaN when
    either side is empty.
    """
    neg = np.asarray(negative_scores, dtype=np.float64).ravel()
    pos = np.asarray(positive_scores, dtype=np.float64).ravel()
    if neg.size == 0 or pos.size == 0:
        return float("nan")
    both = np.concatenate([neg, pos])
    order = np.argsort(both, kind="stable")
    ranks = np.empty(both.size)
    sorted_scores = both[order]
    # average rank (1-based) over runs of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], both.size]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    u = ranks[neg.size:].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (neg.size * pos.size))


def evaluate(probs: np.ndarray, targets: np.ndarray) -> Evaluation:
    return Evaluation(
        accuracy(probs, targets),
        negative_log_likelihood(probs, targets),
        expected_calibration_error(probs, targets),
    )
