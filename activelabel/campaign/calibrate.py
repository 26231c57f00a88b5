"""Calibration every round: a held-out validation split, a fitted temperature, before/after.

Temperature scaling (Guo et al. 2017) needs labels the model was *not* trained on: fitting it
on the training labels would learn the over-confidence back. So from
:data:`MIN_LABELS` labels on, each round holds out :data:`VALIDATION_FRACTION` of the labeled
pool (at least :data:`MIN_VALIDATION` samples), drawn with the round's seed from the labeled
samples in id order, trains on the rest, and fits ``T`` on the held-out part for the predictor
acquisition reads: one deterministic pass (LBFGS on the NLL) for ``deterministic`` and the
members' mean softmax for ``ensemble``; for the sampling methods (``mc_dropout``,
``ensemble+mc_dropout``) the mean of the round's own MC passes (same T, same mask seed as the
round's scoring), ``mean_t softmax(z_t / T)``, by a bounded scalar search
(:func:`~activelabel.pipeline.calibration.fit_mixture_temperature`). Why: that mean is what the
strategies score, and on MNIST it is *under*-confident (ECE 3.65 % at T = 20, where one
deterministic pass has 0.56 %): a temperature fitted on one pass is ~1 and leaves it so.
The same guard applies (below); with 150 held-out labels on MNIST it kept T = 1 on one seed
of two and the floor T = 0.25 on the other (ECE 4.03 % -> 0.80 %; BENCHMARKS.md). The split is redrawn each round (the labeled set grows), so every
label is trained on in most rounds. Below :data:`MIN_LABELS`, every label trains and no
temperature is fitted (acquisition uses ``T = 1``).

Why 500 labels (75 held out): a temperature fitted on a few dozen samples is noise. On the
built-in digits (small CNN, test split of 360), fitting on 9, 12, 15 and 45 held-out labels
(60-300 labeled) raised the test ECE every time (5.6 % -> 13.9 %, 4.2 -> 8.0, 4.1 -> 7.7,
1.8 -> 3.5); on 120 (800 labeled) it lowered it (1.42 % -> 1.16 %) and the NLL and Brier score
with it. See docs/uncertainty.md.

A held-out split the model predicts without a single error cannot calibrate: its NLL decreases
all the way to ``T -> 0`` (seen in a report test: T = 0.09, test NLL 0.086 -> 0.319). One with
one or two errors fits T to them alone (T = 0.26 from one error in 75, test NLL 0.106 -> 0.209).
So T is only fitted when both seeded halves of the split hold an error and a temperature
learned on either half lowers the other half's NLL (:func:`cross_checked_nll`); otherwise the
round keeps ``T = 1`` and says why (``"skipped"``).

The round stores ``{"temperature", "predictor", "validation_size", "validation_errors", "before",
"after"}`` (plus ``"skipped"`` when no temperature was fitted); ``predictor`` says what T was
fitted for (:func:`predictor`, e.g. ``{"method": "mc_dropout", "passes": 20, "members": 1}``);
``before`` and ``after`` are accuracy, NLL, Brier, ECE (15 bins) and the reliability-diagram
bins of that predictor measured on the round's yardstick (the test split, or the labeled
evaluation split), ``None`` without one.
"""

from __future__ import annotations

import numpy as np
import torch

from activelabel.pipeline.calibration import (
    calibration_report,
    fit_mixture_temperature,
    fit_temperature,
    predictive_probabilities,
)
from activelabel.pipeline.metrics import negative_log_likelihood
from activelabel.pipeline.prediction import predict_probabilities

MIN_LABELS = 500
VALIDATION_FRACTION = 0.15
MIN_VALIDATION = 3
BINS = 15


def validation_positions(labeled: int, seed: int) -> np.ndarray:
    """Positions (ascending) of the held-out validation samples among ``labeled`` ones."""
    if labeled < MIN_LABELS:
        return np.zeros(0, dtype=np.int64)
    size = max(MIN_VALIDATION, int(round(VALIDATION_FRACTION * labeled)))
    rng = np.random.default_rng([seed, 0xCA1])
    return np.sort(rng.permutation(labeled)[:size]).astype(np.int64)


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


def cross_checked_nll(
    logits: np.ndarray, labels: np.ndarray, wrong: np.ndarray, seed: int = 0, fit=fit_temperature
) -> list[tuple[float, float, int]]:
    """For each of two seeded halves of the held-out split ``logits`` ``[M, n, C]`` / ``labels``
    ``[n]`` (``wrong`` bool ``[n]``: predicted wrong at T = 1): (its NLL under a temperature fitted on the *other* half, its NLL at T = 1, the
    errors of the half the temperature was fitted on), NLLs in nats per sample.

    Why: a split with one or two errors fits a temperature to them alone (we saw T = 0.26 from
    one error in 75, and T = 0.39 from one in 86, double the test NLL). A temperature can only be
    learned from a half holding errors, and must predict the other half better than T = 1.
    ``fit``: the temperature fit (:func:`fit_temperature`, or ``fit_mixture_temperature`` for a
    sampled predictor).
    """
    halves = np.random.default_rng([seed, 0x7E]).permutation(len(labels)) % 2
    out = []
    for half in (0, 1):
        half_fit, check = halves != half, halves == half
        if not half_fit.any() or not check.any():
            continue
        t = fit(logits[:, half_fit], labels[half_fit])
        out.append((negative_log_likelihood(predictive_probabilities(logits[:, check], t), labels[check]),
                    negative_log_likelihood(predictive_probabilities(logits[:, check], 1.0), labels[check]),
                    int(wrong[half_fit].sum())))
    return out


def fit_round_calibration(
    model: torch.nn.Module | list[torch.nn.Module],
    x_val: np.ndarray,
    y_val: np.ndarray,
    yard_logits: np.ndarray | None,
    yard_targets: np.ndarray | None,
    device: torch.device,
    *,
    samples: int = 0,
    seed: int = 0,
    method: str = "deterministic",
) -> dict:
    """Fit ``T`` on the validation images ``[n, C, H, W]`` / labels ``[n]`` for the predictor
    acquisition reads; report the yardstick logits ``[S, N, C]`` of that same predictor before and
    after (JSON-ready dict, see the module docstring).

    ``samples = 0``: one deterministic pass of each of M models (``yard_logits`` ``[M, N, C]``;
    M = 1 unless an ensemble), ``T`` fitted by LBFGS on the NLL of the members' mean softmax.
    ``samples = T > 0``: ``samples`` MC-dropout passes of each model with masks seeded ``seed`` (the
    round's scoring seed), ``yard_logits`` ``[M * T, N, C]`` from the same passes, ``T`` fitted on
    the NLL of the mean of the passes' softmaxes (:func:`fit_mixture_temperature`). ``method``
    (the campaign's uncertainty method) is stored in ``"predictor"``."""
    members = len(model) if isinstance(model, (list, tuple)) else 1
    val_logits = predict_probabilities(model, x_val, samples=samples, device=device, seed=seed, logits=True)
    fit = fit_mixture_temperature if samples > 0 else fit_temperature
    y_val = np.asarray(y_val)
    wrong = predictive_probabilities(val_logits).argmax(-1) != y_val
    errors = int(wrong.sum())
    result: dict = {"predictor": predictor(method, samples, members), "validation_size": int(len(y_val)),
                    "validation_errors": errors, "before": None, "after": None}
    temperature = 1.0
    if errors == 0:
        # A split the model gets entirely right only says "sharper": its NLL falls all the way
        # to T -> 0 (we saw T = 0.09 double the test NLL). No temperature can be learned from it.
        result["skipped"] = (f"the {len(y_val)} held-out labels are all predicted right, so their NLL only "
                             "asks for ever sharper predictions; T = 1 kept")
    else:
        checks = cross_checked_nll(val_logits, y_val, wrong, fit=fit)
        worse = [(fitted, at_one) for fitted, at_one, _ in checks if fitted > at_one]
        if any(half_errors == 0 for _, _, half_errors in checks):
            result["skipped"] = (f"only {errors} of the {len(y_val)} held-out labels are predicted wrong, and a half "
                                 "of the split without an error can only ask for ever sharper predictions; T = 1 kept")
        elif worse:
            fitted, at_one = worse[0]
            result["skipped"] = (f"a temperature fitted on half of the {len(y_val)} held-out labels ({errors} "
                                 f"wrong) made the other half's NLL worse ({at_one:.4f} -> {fitted:.4f}): too few "
                                 "errors to learn T from; T = 1 kept")
        else:
            temperature = fit(val_logits, y_val)
    result["temperature"] = temperature
    if yard_logits is not None and len(yard_logits):
        for key, t in (("before", 1.0), ("after", temperature)):
            report = calibration_report(predictive_probabilities(yard_logits, t), yard_targets, bins=BINS)
            result[key] = report.to_dict()
    return result
