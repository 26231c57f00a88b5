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
The same guard applies (below). The split is redrawn each round (the labeled set grows), so every
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
So the round guards the fit (:func:`cross_validated_nll`): it needs at least
:data:`MIN_ERRORS` wrong answers on the split, deals them one per fold over :data:`FOLDS` = 5
seeded folds (:func:`error_stratified_folds`), scores each fold under the temperature fitted on
the other four, and keeps the temperature fitted on the whole split only when this pooled
out-of-fold NLL is lower than the split's NLL at T = 1. Otherwise the round keeps ``T = 1`` and
says why (``"skipped"``, naming the counts or the two NLLs).

Why at least 5 errors (:data:`MIN_ERRORS` = :data:`FOLDS`): a temperature is learned from the
errors (right answers only ever ask for sharper predictions). With 5 errors dealt one per fold,
every fold's temperature is learned from at least 4 of them and every fold is judged on an
error that an over-sharpening temperature pays for; with fewer, some folds are judged on right
answers alone, which approve any sharpening, and the whole split's T rests on 1-4 answers.

Why K folds, not the two halves it replaced: the halves check learned T from half the errors
and judged it on the other half alone. With 150 held-out MNIST labels and 10 errors it kept
``T = 1`` (MC-mean ECE 3.23 %) where the whole split's T (0.52) gave 0.88 %. Five folds fit on
80 % of the errors and judge on all of them, and every error is judged once by a temperature
fitted without it, which is what keeping T on unseen images asks. (That model could not be
retrained bit for bit. Of five models measured since, the two checks agreed on four; on the
fifth, 7 errors in 150, the halves refused and this check kept T = 0.50: MC-mean ECE 4.87 % ->
1.83 %, test NLL 0.163 -> 0.141.) Measured on MNIST at 1,000 labels (3 seeds,
``bench/calibration_mnist.py``, BENCHMARKS.md), MC mean: it kept T = 0.44 (7 errors in 150;
ECE 4.97 % -> 1.68 %) and T = 0.25 (5 errors; 3.73 % -> 0.73 %) and refused the third seed (6
errors, out-of-fold NLL 0.178 -> 0.188; 3.39 % kept, where the whole split's T would have given
1.87 %); the test NLL never rose. One deterministic pass (already calibrated, ECE 0.49 %): T = 1
kept on all three. Why :data:`VALIDATION_FRACTION` stays 0.15: holding out 25 % (10 errors per
seed) gave a worse mean ECE after (2.78 % vs 1.93 %) and cost accuracy (96.05 % vs 96.21 %); and
even a T fitted on 5,000 held-out images leaves this mixture at 1.63 % (its NLL-optimal T is not
its ECE-optimal one). The mixture temperature below fixes that: on the same three models the
round keeps ``T2`` (alone on seeds 0 and 2, on top of ``T1`` on seed 1), and the MC-mean ECE is
0.72 / 0.75 / 0.70 % (BENCHMARKS.md).

A sampled predictor (S > 1 MC passes and/or ensemble members) gets a second parameter, the
*mixture temperature* ``T2``: the calibrated predictive distribution is
``softmax(log(mean_s softmax(z_s / T1)) / T2)``
(:func:`~activelabel.pipeline.calibration.calibrated_probabilities`), ``T1`` being the per-pass
temperature above. Why: one ``T1`` cannot calibrate the mean of the passes. It changes how far
the passes agree as well as how sharp each is, and on MNIST the NLL-optimal ``T1`` left the MC
mean at 1.4-2.0 % ECE even when fitted on 5,000 images (3 seeds), where ``T2`` reached 0.4-0.6 %.
``T2`` raises a sample's class probabilities to one power and renormalises, so it moves no
argmax. The round picks among four calibrators, :data:`CANDIDATES`: none, ``T1`` alone, ``T2``
alone (``T1 = 1``), and ``T1`` then ``T2``. It keeps the one with the lowest out-of-fold NLL on
the same 5 folds (:func:`choose_mixture_calibration`; ties go to the simpler). So ``T2`` is kept
only when a ``T2`` fitted without each fold predicts that fold better than both ``T = 1`` and
``T1`` alone; the ``MIN_ERRORS`` rule applies unchanged. The candidate "``T1`` then ``T2``" on
its own would not do: on MNIST seed 0 it lost to ``T1`` out of fold (0.1897 vs 0.1891), which
left that seed at 1.68 %, while ``T2`` alone won (0.1793) and gave 0.72 %.

What each reader gets. Acquisition divides each pass's logits by ``T1`` only
(``steps._acquisition_temperature``), so the ``[S, N, C]`` probabilities the strategies see, BALD's
per-pass distributions, and the stored decomposition (total = aleatoric + epistemic) are all at
``T1``, as before. ``T2`` acts only on the averaged distribution, and that is what the stored
``before``/``after`` figures, the reliability diagrams, ``status`` and the report describe. So
when the round keeps ``T2`` alone, acquisition scores the raw passes (``T1 = 1``). The stored
calibrated mean is then sharper than the mean whose entropy the ``entropy`` strategy ranks. Its
ranking may differ too: ``T2`` changes each sample's entropy by a different amount.

The round stores ``{"temperature", "mixture_temperature", "predictor", "validation_size",
"validation_errors", "before", "after"}`` (plus ``"skipped"`` when neither temperature was kept,
``"check"``, the :func:`cross_validated_nll` dict of ``T1``, whenever the K-fold check ran, and
``"mixture_check"``, the :func:`choose_mixture_calibration` dict, when it ran for a sampled
predictor); ``"temperature"`` is ``T1``, ``"mixture_temperature"`` ``T2`` (1.0 when not kept; rounds
stored before it existed have no key and mean 1.0); ``predictor`` says what T was
fitted for (:func:`predictor`, e.g. ``{"method": "mc_dropout", "passes": 20, "members": 1}``);
``before`` and ``after`` are accuracy, NLL, Brier, ECE (15 bins) and the reliability-diagram
bins of that predictor measured on the round's yardstick (the test split, or the labeled
evaluation split), ``None`` without one.
"""

from __future__ import annotations

import numpy as np
import torch

from activelabel.campaign.calibration_terms import (  # noqa: F401 (re-exported: torch-free home)
    BINS,
    FOLDS,
    MIN_ERRORS,
    MIN_LABELS,
    MIN_VALIDATION,
    VALIDATION_FRACTION,
    describe_predictor,
    predictor,
)
from activelabel.errors import InvalidArrayError
from activelabel.pipeline.calibration import (
    calibrated_probabilities,
    calibration_report,
    fit_mixture_sharpness,
    fit_mixture_temperature,
    fit_temperature,
    predictive_probabilities,
)
from activelabel.pipeline.metrics import negative_log_likelihood
from activelabel.pipeline.prediction import predict_probabilities


def validation_positions(labeled: int, seed: int) -> np.ndarray:
    """Positions (ascending) of the held-out validation samples among ``labeled`` ones."""
    if labeled < MIN_LABELS:
        return np.zeros(0, dtype=np.int64)
    size = max(MIN_VALIDATION, int(round(VALIDATION_FRACTION * labeled)))
    rng = np.random.default_rng([seed, 0xCA1])
    return np.sort(rng.permutation(labeled)[:size]).astype(np.int64)


def error_stratified_folds(wrong: np.ndarray, seed: int, folds: int = FOLDS) -> np.ndarray:
    """Fold index ``[n]`` (ints in ``[0, folds)``) of each held-out sample, ``wrong`` bool ``[n]``.

    The wrong samples (seeded order) are dealt round-robin first, then the right ones continue
    the deal, so the errors spread as evenly as they can (fold error counts differ by at most
    one, and with ``errors >= folds`` every fold holds one) and fold sizes differ by at most one.
    Deterministic in ``seed``. Why stratify: a temperature is learned from the errors (right
    answers only ever ask for sharper predictions), so a fold that drew none would fit T to the
    right answers alone, and one that drew them all would leave the others nothing to learn from.
    """
    wrong = np.asarray(wrong, dtype=bool)
    rng = np.random.default_rng([seed, 0xF01D])
    order = np.concatenate([rng.permutation(np.flatnonzero(wrong)), rng.permutation(np.flatnonzero(~wrong))])
    fold = np.empty(len(wrong), dtype=np.int64)
    fold[order] = np.arange(len(order)) % folds
    return fold


def cross_validated_nll(
    logits: np.ndarray, labels: np.ndarray, wrong: np.ndarray, seed: int = 0, fit=fit_temperature,
    folds: int = FOLDS, apply=predictive_probabilities, fold: np.ndarray | None = None,
) -> dict:
    """K-fold check of a temperature on the held-out split ``logits`` ``[M, n, C]`` / ``labels``
    ``[n]`` (``wrong`` bool ``[n]``: predicted wrong at T = 1), K = ``folds``.

    Each fold (:func:`error_stratified_folds`) is scored under the temperature ``fit`` learned on
    the other K - 1 folds. Returns ``{"folds": K, "out_of_fold_nll", "nll_at_1",
    "fold_temperatures": [K floats], "fold_errors": [K ints]}``: the NLLs (nats per sample) pooled
    over all n held-out labels, each label under the temperature fitted *without* it, and all at
    T = 1. ``fit``: :func:`fit_temperature`, or ``fit_mixture_temperature`` for a sampled
    predictor, or any ``fit(logits, labels)`` returning a float or a tuple of floats (then stored
    as a list per fold); ``apply(logits, *params)`` turns a fold's logits and what ``fit`` returned
    into probabilities ``[n_fold, C]`` (default :func:`predictive_probabilities`; the mixture
    temperature's check passes ``calibrated_probabilities``). ``fold`` (ints ``[n]`` in
    ``[0, folds)``) replaces the error-stratified folds: segmentation passes pixel rows dealt by
    image (:func:`~activelabel.pipeline.pixel_calibration.image_folds`).

    Why this check: it asks the question the round cares about, "does a temperature learned from
    labels like these predict *unseen* labels better than T = 1?", with every held-out label used
    both to fit (in K - 1 fits) and to judge (once). It replaces a two-halves check that learned
    from half the errors and judged on the other half alone: with 150 held-out labels and 10
    errors that kept T = 1 on MNIST although the whole split's T predicts the test set better
    (BENCHMARKS.md). Raises :class:`~activelabel.errors.InvalidArrayError` when n < ``folds``
    (a fold would be empty), and whatever ``fit`` raises for bad logits or labels.
    """
    labels = np.asarray(labels)
    if len(labels) < folds:
        raise InvalidArrayError(f"a {folds}-fold check needs at least {folds} held-out labels; got {len(labels)}")
    fold = error_stratified_folds(wrong, seed, folds) if fold is None else np.asarray(fold)
    out_of_fold = np.empty(logits.shape[1:])  # [n, C]: each row under the temperature fitted without it
    temperatures, errors = [], []
    for k in range(folds):
        check, rest = fold == k, fold != k
        t = fit(logits[:, rest], labels[rest])
        out_of_fold[check] = apply(logits[:, check], *t) if isinstance(t, tuple) else apply(logits[:, check], t)
        temperatures.append([float(v) for v in t] if isinstance(t, tuple) else float(t))
        errors.append(int(np.asarray(wrong)[check].sum()))
    return {"folds": folds, "out_of_fold_nll": negative_log_likelihood(out_of_fold, labels),
            "nll_at_1": negative_log_likelihood(predictive_probabilities(logits, 1.0), labels),
            "fold_temperatures": temperatures, "fold_errors": errors}


#: The calibrators a sampled predictor's round chooses from, simplest first: (name, per-pass T1
#: fitted?, mixture T2 fitted?). "none" is T1 = T2 = 1.
CANDIDATES = (("none", False, False), ("temperature", True, False), ("mixture_temperature", False, True),
              ("both", True, True))


def choose_mixture_calibration(
    logits: np.ndarray, labels: np.ndarray, wrong: np.ndarray, check: dict, seed: int = 0, fit=fit_mixture_temperature,
    fold: np.ndarray | None = None,
) -> dict:
    """Choose, by out-of-fold NLL, the calibrator of a sampled predictor (logits ``[S, n, C]``,
    S > 1 passes or members; ``labels`` ``[n]``; ``wrong`` bool ``[n]`` at T = 1) among
    :data:`CANDIDATES`: nothing, the per-pass ``T1`` alone (``fit``), the mixture ``T2`` alone
    (:func:`~activelabel.pipeline.calibration.fit_mixture_sharpness` at ``T1 = 1``), and ``T1``
    then ``T2`` on top. ``check`` is the round's :func:`cross_validated_nll` of ``T1`` (it gives
    the first two candidates' NLLs, unchanged). The other two are scored the same way, on the
    same ``seed``-ed folds: each fold under both temperatures fitted on the other four. ``fold``
    (ints ``[n]``) replaces those folds, as in :func:`cross_validated_nll`: segmentation passes
    the folds by image its ``check`` used.

    Returns ``{"out_of_fold_nll": {name: float}, "fold_temperatures": {"mixture_temperature":
    [K floats], "both": [K [T1, T2] pairs]}, "chosen": name}``; the chosen candidate has the
    lowest out-of-fold NLL (ties go to the simpler, earlier one). So ``T2`` is kept only if a
    ``T2`` fitted without each fold predicts that fold better than both T = 1 and ``T1`` alone
    do: the guard of ``T1`` extended to the new parameter, with no more labels needed.
    """

    def both(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        t1 = fit(z, y)
        return t1, fit_mixture_sharpness(z, y, t1)

    alone = cross_validated_nll(logits, labels, wrong, seed=seed, fit=lambda z, y: fit_mixture_sharpness(z, y, 1.0),
                                apply=lambda z, t2: calibrated_probabilities(z, 1.0, t2), fold=fold)
    joint = cross_validated_nll(logits, labels, wrong, seed=seed, fit=both, apply=calibrated_probabilities, fold=fold)
    nll = {"none": check["nll_at_1"], "temperature": check["out_of_fold_nll"],
           "mixture_temperature": alone["out_of_fold_nll"], "both": joint["out_of_fold_nll"]}
    chosen = min(nll, key=lambda name: (nll[name], [c[0] for c in CANDIDATES].index(name)))
    return {"out_of_fold_nll": nll, "fold_temperatures": {"mixture_temperature": alone["fold_temperatures"],
                                                          "both": joint["fold_temperatures"]}, "chosen": chosen}


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
    (the campaign's uncertainty method) is stored in ``"predictor"``.

    With more than one pass or member (S > 1) the round also considers the mixture temperature
    ``T2`` (:func:`choose_mixture_calibration`) and stores ``"mixture_temperature"`` (1.0 when not
    kept) and ``"mixture_check"``; ``before``/``after`` are then the figures of
    ``calibrated_probabilities(yard_logits, T, T2)``. One deterministic pass (S = 1) stores
    ``"mixture_temperature": 1.0`` and nothing else new: there ``T2`` would only multiply ``T``."""
    members = len(model) if isinstance(model, (list, tuple)) else 1
    val_logits = predict_probabilities(model, x_val, samples=samples, device=device, seed=seed, logits=True)
    fit = fit_mixture_temperature if samples > 0 else fit_temperature
    y_val = np.asarray(y_val)
    wrong = predictive_probabilities(val_logits).argmax(-1) != y_val
    errors = int(wrong.sum())
    result: dict = {"predictor": predictor(method, samples, members), "validation_size": int(len(y_val)),
                    "validation_errors": errors, "before": None, "after": None}
    temperature, mixture_temperature = 1.0, 1.0
    if errors == 0:
        # A split the model gets entirely right only says "sharper": its NLL falls all the way
        # to T -> 0 (we saw T = 0.09 double the test NLL). No temperature can be learned from it.
        result["skipped"] = (f"the {len(y_val)} held-out labels are all predicted right, so their NLL only "
                             "asks for ever sharper predictions; T = 1 kept")
    elif errors < MIN_ERRORS:
        result["skipped"] = (f"only {errors} of the {len(y_val)} held-out labels are predicted wrong (the round needs "
                             f"{MIN_ERRORS}, one per cross-validation fold), and a temperature fitted to so few "
                             "errors is fitted to them alone; T = 1 kept")
    else:
        check = cross_validated_nll(val_logits, y_val, wrong, seed=seed, fit=fit)
        result["check"] = check
        chosen = "none" if check["out_of_fold_nll"] >= check["nll_at_1"] else "temperature"
        if val_logits.ndim == 3 and val_logits.shape[0] > 1:
            mixture = choose_mixture_calibration(val_logits, y_val, wrong, check, seed=seed, fit=fit)
            result["mixture_check"] = mixture
            chosen = mixture["chosen"]
        fits_t1, fits_t2 = next((t1, t2) for name, t1, t2 in CANDIDATES if name == chosen)
        if fits_t1:
            temperature = fit(val_logits, y_val)
        if fits_t2:
            mixture_temperature = fit_mixture_sharpness(val_logits, y_val, temperature)
        if chosen == "none":
            nll = result.get("mixture_check", {}).get("out_of_fold_nll")
            nor_mixture = ("" if nll is None else f", nor a mixture temperature (out-of-fold NLL "
                           f"{nll['mixture_temperature']:.4f} alone, {nll['both']:.4f} on top of the per-pass one)")
            result["skipped"] = (f"temperatures fitted on {FOLDS - 1} of {FOLDS} folds of the {len(y_val)} held-out "
                                 f"labels ({errors} wrong) predicted the left-out folds no better than T = 1 "
                                 f"(out-of-fold NLL {check['nll_at_1']:.4f} -> {check['out_of_fold_nll']:.4f}): "
                                 f"the split cannot tell a temperature{nor_mixture}; T = 1 kept")
    result["temperature"] = temperature
    result["mixture_temperature"] = mixture_temperature
    if yard_logits is not None and len(yard_logits):
        for key, (t1, t2) in (("before", (1.0, 1.0)), ("after", (temperature, mixture_temperature))):
            report = calibration_report(calibrated_probabilities(yard_logits, t1, t2), yard_targets, bins=BINS)
            result[key] = report.to_dict()
    return result
