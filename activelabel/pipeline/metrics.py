"""How good and how calibrated a model is on held-out data: accuracy, NLL, ECE."""

from __future__ import annotations

from dataclasses import dataclass

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


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    """Confidence-vs-accuracy gap averaged over equal-width confidence bins (Guo et al. 2017)."""
    if len(targets) == 0:
        return float("nan")
    confidence = probs.max(axis=1)
    correct = np.argmax(probs, axis=1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds confidences in (edges[i], edges[i+1]]; confidence 0 falls in the first bin.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def evaluate(probs: np.ndarray, targets: np.ndarray) -> Evaluation:
    return Evaluation(
        accuracy(probs, targets),
        negative_log_likelihood(probs, targets),
        expected_calibration_error(probs, targets),
    )
