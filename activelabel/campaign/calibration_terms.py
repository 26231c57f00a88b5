"""The calibration settings and words that read-only commands need, without torch.

``status --round``, ``report`` and the uncertainty summaries name a round's predictor and say
why no temperature was fitted; they read these from here, not from
:mod:`activelabel.campaign.calibrate`, because that module imports torch (1.5-5 s of start-up
on a loaded machine; bench/startup.py). :mod:`~activelabel.campaign.calibrate` re-exports
every name, and the reasons for the values are in its docstring.
"""

from __future__ import annotations

MIN_LABELS = 500  # labels before a round holds some out to fit a temperature
VALIDATION_FRACTION = 0.15  # share of the labeled pool held out (from MIN_LABELS on)
MIN_VALIDATION = 3  # smallest held-out split
FOLDS = 5  # folds of the cross-validated guard on the fitted temperature
MIN_ERRORS = FOLDS  # wrong answers on the held-out split the guard needs
BINS = 15  # equal-width confidence bins of the ECE
SEGMENTATION_MIN_IMAGES = 20  # labeled images before a segmentation round fits a per-pixel T


def predictor(method: str, samples: int, members: int) -> dict:
    """What acquisition reads, as stored in ``calibration["predictor"]``: the uncertainty
    ``method``, MC ``passes`` per member (1 without sampling) and ensemble ``members``."""
    return {"method": method, "passes": max(int(samples), 1), "members": int(members)}


def describe_predictor(stored: dict | None) -> str:
    """``calibration["predictor"]`` in words (rounds stored before it existed: one pass)."""
    if not stored or stored.get("passes", 1) == 1 and stored.get("members", 1) == 1:
        return "one deterministic pass"
    members, passes = stored.get("members", 1), stored.get("passes", 1)
    if members > 1 and passes > 1:
        return f"mean of {members} members x {passes} MC-dropout passes"
    return f"mean of {members} ensemble members" if members > 1 else f"mean of {passes} MC-dropout passes"


def kept_mixture_temperature(calibration: dict) -> float | None:
    """The mixture temperature ``T2`` a round's stored ``calibration`` kept, or None when it kept
    none (stored 1.0, or a round stored before ``T2`` existed)."""
    t2 = float(calibration.get("mixture_temperature", 1.0))
    return None if t2 == 1.0 else t2
