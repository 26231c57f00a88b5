"""Whether a round's model learned anything: its test accuracy against the trivial answer.

A model trained too briefly, on too few or on wrong labels can end at or below what always
answering the most common label scores (for segmentation: painting every pixel the most
common class, usually the background). Its uncertainty scores then order the pool no better
than random, and the round's table shows only a small number that is easy to miss, so the
training line says it as a warning with what to check.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["chance_accuracy", "chance_advice", "chance_clause", "no_better_than_chance"]


def chance_advice(campaign: str | None = None, round_index: int | None = None, fixed_epochs: bool = True) -> str:
    """What a round at chance means and what to check (the end of the warning): the status
    command of this campaign's round, runnable as it stands, and "drop fixed_epochs" only where
    it is set (trial 18 F14: a literal ``--round N`` in a warning that did not name the campaign,
    among a compare's four)."""
    import shlex

    where = (f"activelabel status {shlex.quote(campaign)} --round {round_index}"
             if campaign is not None and round_index is not None else "activelabel status CAMPAIGN --round N")
    longer = "more epochs, or drop fixed_epochs" if fixed_epochs else "more epochs"
    return f"its uncertainty scores pick no better than random; check the labels (`{where}`), and train longer ({longer})"


def chance_accuracy(targets: np.ndarray, classes: int) -> tuple[float, int]:
    """(accuracy of the best constant answer, its class index) on ``targets`` (class indices,
    shape [N]): the most common class's share, and never below 1 / ``classes``."""
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=classes)
    best = int(counts.argmax())
    share = float(counts[best]) / max(1, int(counts.sum()))
    return max(share, 1.0 / classes), best


def no_better_than_chance(accuracy: float, targets: np.ndarray, labels: Sequence[str],
                          unit: str = "samples", advice: str | None = None) -> str | None:
    """A warning's words to follow the round's accuracy when ``accuracy`` (on ``targets``,
    class indices into ``labels``, any shape) is at or below :func:`chance_accuracy`, else None
    (see :func:`chance_clause`). ``unit``: what a target is (default "samples"); ``advice``: the
    round's :func:`chance_advice` (default: the generic one)."""
    clause = chance_clause(accuracy, targets, labels, unit)
    return None if clause is None else f"that is {clause}, so {advice or chance_advice()}"


def chance_clause(accuracy: float, targets: np.ndarray, labels: Sequence[str], unit: str = "samples",
                  measure: str | None = None) -> str | None:
    """``no better than chance (0.846: always answering 'background' on these 6,109 labeled
    pixels)`` when ``accuracy`` is at or below :func:`chance_accuracy` on ``targets``, else
    None; with ``measure`` the number compared leads (``pixel accuracy 0.759 is no better ...``),
    for a line whose headline number is another one (a segmentation round's mIoU: trial 15 F5).
    ``unit``: what a target is (a segmentation round passes its labeled yardstick pixels).

    Said only when the measurement holds at least one target per class: on fewer, a model's
    accuracy and the chance level are both too coarse to compare."""
    targets = np.asarray(targets).reshape(-1)
    if len(labels) < 2 or len(targets) < len(labels):
        return None
    chance, best = chance_accuracy(targets, len(labels))
    if accuracy > chance:
        return None
    lead = "" if measure is None else f"{measure} {accuracy:.3f} is "
    return (f"{lead}no better than chance ({chance:.3f}: always answering {labels[best]!r} on these "
            f"{len(targets):,} {unit})")
