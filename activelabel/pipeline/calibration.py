"""Temperature scaling and calibration reports (Guo, Pleiss, Sun & Weinberger 2017).

Modern networks are over-confident: their softmax peaks exceed their accuracy. Temperature
scaling divides the logits by one scalar ``T > 0`` fitted to minimise the negative
log-likelihood on a *labeled validation split held out from training* (fitting it on the
training labels would learn the over-confidence back). ``T`` does not change any argmax, so
accuracy is untouched for a single prediction; it only softens (``T > 1``) or sharpens
(``T < 1``) the probabilities that acquisition and users read.

Shapes. ``logits`` are ``[N, C]`` (one deterministic pass) or ``[S, N, C]`` (S MC-dropout
passes or ensemble members). For ``[S, N, C]`` the same ``T`` scales *each pass's* logits, each
pass goes through its own softmax, and the predictive distribution is the mean of those
softmaxes — the distribution acquisition sees (``[S, N, C]`` probabilities keep their S axis
for BALD). :func:`fit_temperature` fits ``T`` against exactly that averaged distribution's NLL.
Averaging the passes can move the argmax of the mean slightly when ``T`` changes, so for
``[S, N, C]`` accuracy is preserved only approximately. A second, *mixture* temperature ``T2``
(:func:`calibrated_probabilities`, :func:`fit_mixture_sharpness`) scales the log of that mean:
``softmax(log(mean_s softmax(z_s / T1)) / T2)``; it moves no argmax, and ``T2 = 1`` is the mean
itself. The per-pass ``[S, N, C]`` probabilities (what BALD reads) never see ``T2``.

Labels are int ``[N]`` in ``[0, C)``. NLL is in nats per sample; Brier in [0, 2]; ECE in
[0, 1] over 15 equal-width confidence bins. Numbers come back as Python floats; the torch
dependency is only the LBFGS fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike

from activelabel.errors import InvalidArrayError
from activelabel.pipeline.metrics import (
    ReliabilityBin,
    accuracy,
    brier_score,
    ece_from_bins,
    negative_log_likelihood,
    reliability_bins,
)

#: Fitted temperatures are kept inside [MIN_TEMPERATURE, MAX_TEMPERATURE]. A validation split
#: the model gets entirely right pushes the NLL optimum towards T -> 0; the bound stops that.
MIN_TEMPERATURE = 0.01
MAX_TEMPERATURE = 100.0


@dataclass(frozen=True)
class CalibrationReport:
    """How good and how calibrated predictions are on one labeled split.

    ``accuracy`` (fraction), ``nll`` (nats per sample), ``brier`` (mean over samples of the
    summed squared error over classes), ``ece`` (15 equal-width bins unless told otherwise),
    ``bins`` the reliability-diagram data, one :class:`ReliabilityBin`
    ``(lower, upper, confidence, accuracy, count)`` per bin, counts summing to ``N``.
    """

    accuracy: float
    nll: float
    brier: float
    ece: float
    bins: list[ReliabilityBin]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> ``None``), for storing beside the round."""

        def clean(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        return {
            "accuracy": clean(self.accuracy),
            "nll": clean(self.nll),
            "brier": clean(self.brier),
            "ece": clean(self.ece),
            "bins": [
                {"lower": b.lower, "upper": b.upper, "confidence": clean(b.confidence),
                 "accuracy": clean(b.accuracy), "count": b.count}
                for b in self.bins
            ],
        }


def _as_logits(logits: ArrayLike | torch.Tensor) -> np.ndarray:
    """A finite float64 ``[N, C]`` or ``[S, N, C]`` numpy copy of ``logits``."""
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().cpu().numpy()
    try:
        z = np.array(logits, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArrayError(f"logits must be a numeric array [N, C] or [S, N, C]: {exc}") from exc
    if z.ndim not in (2, 3) or z.shape[-1] < 2:
        raise InvalidArrayError(
            f"logits must be shaped [N, C] or [S, N, C] with C >= 2; got shape {z.shape}"
        )
    if not np.isfinite(z).all():
        raise InvalidArrayError(
            f"logits contain {int((~np.isfinite(z)).sum())} non-finite values (NaN or inf)"
        )
    return z


def _as_labels(labels: ArrayLike | torch.Tensor, n: int, c: int, what: str = "labels") -> np.ndarray:
    """Integer ``[n]`` labels in ``[0, c)``, or a typed error."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise InvalidArrayError(f"{what} must be shaped [N] = [{n}] to match the logits; got {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise InvalidArrayError(f"{what} must be integers; got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= c):
        raise InvalidArrayError(f"{what} must lie in [0, {c}); got values from {y.min()} to {y.max()}")
    return y.astype(np.int64)


def _check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not math.isfinite(t) or t <= 0:
        raise InvalidArrayError(f"temperature must be a finite number > 0; got {temperature!r}")
    return t


def apply_temperature(logits: ArrayLike | torch.Tensor, temperature: float) -> np.ndarray:
    """Probabilities ``softmax(logits / T)`` over the last axis, same shape as ``logits``.

    ``[N, C]`` -> ``[N, C]``; ``[S, N, C]`` -> ``[S, N, C]`` (each pass scaled and softmaxed on
    its own; average over S for the predictive distribution, or hand the tensor to an
    acquisition function as is). float64. Raises
    :class:`~activelabel.errors.InvalidArrayError` for bad logits or ``T <= 0``.
    """
    z = _as_logits(logits) / _check_temperature(temperature)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def predictive_probabilities(logits: ArrayLike | torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    """The predictive distribution ``[N, C]``: the softmax of ``[N, C]`` logits, or the mean
    over S of the per-pass softmaxes of ``[S, N, C]`` logits, each at temperature ``T``."""
    probs = apply_temperature(logits, temperature)
    return probs.mean(axis=0) if probs.ndim == 3 else probs


def _nll_torch(z: torch.Tensor, y: torch.Tensor, log_t: torch.Tensor) -> torch.Tensor:
    """Mean NLL (nats) of the labels under the temperature-scaled predictive distribution."""
    log_p = torch.log_softmax(z / log_t.exp(), dim=-1)
    if z.ndim == 3:  # log mean_s softmax = logsumexp_s log softmax - log S
        log_p = torch.logsumexp(log_p, dim=0) - math.log(z.shape[0])
    return -log_p.gather(-1, y[:, None]).mean()


def fit_temperature(
    logits: ArrayLike | torch.Tensor,
    labels: ArrayLike | torch.Tensor,
    *,
    max_iter: int = 100,
) -> float:
    """Fit the temperature ``T`` minimising validation NLL (Guo et al. 2017), as a float.

    ``logits`` ``[N, C]`` or ``[S, N, C]`` and ``labels`` int ``[N]`` of a *held-out labeled
    validation split*. Optimises ``log T`` (so ``T`` stays positive) with LBFGS and a
    strong-Wolfe line search in float64, starting at ``T = 1``; ``T`` is kept inside
    [:data:`MIN_TEMPERATURE`, :data:`MAX_TEMPERATURE`]. ``T > 1`` means the model was
    over-confident. For ``[S, N, C]`` the NLL is that of the mean of the per-pass softmaxes.
    Deterministic. Raises :class:`~activelabel.errors.InvalidArrayError` for bad or empty
    inputs, or when the fit does not produce a finite temperature.
    """
    z_np = _as_logits(logits)
    n, c = z_np.shape[-2], z_np.shape[-1]
    y_np = _as_labels(labels, n, c)
    if n == 0:
        raise InvalidArrayError("cannot fit a temperature on an empty validation split")
    z = torch.from_numpy(z_np)
    y = torch.from_numpy(y_np)
    lo, hi = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
        tolerance_grad=1e-9, tolerance_change=1e-12,
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _nll_torch(z, y, log_t.clamp(lo, hi))
        loss.backward()
        return loss

    optimizer.step(closure)
    t = math.exp(min(max(float(log_t.detach()), lo), hi))
    if not math.isfinite(t):
        raise InvalidArrayError("temperature fit diverged; check the validation logits and labels")
    return t


#: Grid points (log-spaced over [MIN_MIXTURE_TEMPERATURE, MAX_TEMPERATURE]) of the mixture fit's first stage.
MIXTURE_GRID = 81
#: Lower bound of a mixture's temperature. Below it every pass's softmax is nearly one-hot (a
#: logit gap of 4 nats becomes 16) and the mean over passes turns into a vote count, which
#: gives ~0 to any class no pass votes for: a held-out split whose few errors each got some
#: votes asks for ever smaller T, and unseen images pay for it. Seen on MNIST (150 held-out
#: labels, 5 errors): T = 0.046 passed the two-halves check the round used then and raised the
#: test NLL from 0.150 to 0.244.
MIN_MIXTURE_TEMPERATURE = 0.25


def _mixture_nll(z: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Mean NLL (nats) of ``y`` under ``mean_s softmax(z_s / T)`` for logits ``[S, N, C]`` (float64)."""
    log_p = _per_pass_log_softmax(z, temperature)
    picked = np.take_along_axis(log_p, np.broadcast_to(y[None, :, None], (z.shape[0], z.shape[1], 1)), -1)[..., 0]
    return float(-_log_mean_over_passes(picked).mean())  # log mean_s p_s(y): the label's column only


def _per_pass_log_softmax(z: np.ndarray, temperature: float) -> np.ndarray:
    """``log softmax(z_s / T)`` of each pass, same shape as ``z`` (float64, stable)."""
    scaled = z / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    return scaled - np.log(np.exp(scaled).sum(axis=-1, keepdims=True))


def _log_mean_over_passes(log_p: np.ndarray) -> np.ndarray:
    """``log mean_s exp(log_p_s)`` over the first axis (log-sum-exp: stays finite)."""
    top = log_p.max(axis=0)
    return top + np.log(np.exp(log_p - top).mean(axis=0))


def fit_mixture_temperature(
    logits: ArrayLike | torch.Tensor,
    labels: ArrayLike | torch.Tensor,
) -> float:
    """Fit ``T`` minimising the NLL of the predictive distribution ``mean_s softmax(z_s / T)``.

    ``logits`` ``[S, N, C]`` (S MC-dropout passes and/or ensemble members, each scaled by the same
    ``T`` before its own softmax; ``[N, C]`` is read as S = 1) and labels int ``[N]`` of a held-out
    labeled split. Returns a float in [:data:`MIN_MIXTURE_TEMPERATURE`, :data:`MAX_TEMPERATURE`]
    (why the floor: see :data:`MIN_MIXTURE_TEMPERATURE`).

    Why not LBFGS from ``T = 1`` (:func:`fit_temperature`): the NLL of one softmax is convex in
    ``1/T``, that of a *mean* of softmaxes is not (each pass sharpens towards its own vote as T
    falls, and passes that disagree pull the mixture's NLL up again), so a local method started
    at ``T = 1`` has no guarantee of the global minimum. A bounded scalar search finds it
    instead: the NLL on a :data:`MIXTURE_GRID`-point log-spaced grid over the bounds, then a
    bounded Brent search (scipy ``minimize_scalar``) on ``log T`` between the best point's
    neighbours. Deterministic; float64. Raises
    :class:`~activelabel.errors.InvalidArrayError` for bad or empty inputs.
    """
    from scipy.optimize import minimize_scalar

    z = _as_logits(logits)
    if z.ndim == 2:
        z = z[None]
    y = _as_labels(labels, z.shape[1], z.shape[2])
    if z.shape[1] == 0:
        raise InvalidArrayError("cannot fit a temperature on an empty validation split")
    grid = np.linspace(math.log(MIN_MIXTURE_TEMPERATURE), math.log(MAX_TEMPERATURE), MIXTURE_GRID)
    nll = [_mixture_nll(z, y, math.exp(g)) for g in grid]
    best = int(np.argmin(nll))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    found = minimize_scalar(lambda g: _mixture_nll(z, y, math.exp(g)), bounds=(lo, hi), method="bounded",
                            options={"xatol": 1e-6})
    log_t = float(found.x) if found.success and found.fun <= nll[best] else float(grid[best])
    return math.exp(log_t)


def mixture_log_probabilities(logits: ArrayLike | torch.Tensor, temperature: float = 1.0) -> np.ndarray:
    """``log mean_s softmax(z_s / T)`` ``[N, C]`` (float64, finite) of logits ``[S, N, C]``
    (``[N, C]`` is read as S = 1: the log softmax), computed as a log-sum-exp over the passes so
    that a class no pass believes in keeps a finite log probability. Raises
    :class:`~activelabel.errors.InvalidArrayError` for bad logits or ``T <= 0``."""
    z = _as_logits(logits)
    if z.ndim == 2:
        z = z[None]
    return _log_mean_over_passes(_per_pass_log_softmax(z, _check_temperature(temperature)))


def calibrated_probabilities(
    logits: ArrayLike | torch.Tensor, temperature: float = 1.0, mixture_temperature: float = 1.0
) -> np.ndarray:
    """The calibrated predictive distribution ``[N, C]`` of logits ``[N, C]`` or ``[S, N, C]``:
    ``softmax(log(mean_s softmax(z_s / T1)) / T2)``, ``T1`` = ``temperature`` (per pass, what
    acquisition sees), ``T2`` = ``mixture_temperature`` (on the averaged distribution only).

    ``T2 = 1`` returns :func:`predictive_probabilities` ``(logits, T1)`` itself (bit for bit), so
    a round without a mixture temperature reports what it reported before ``T2`` existed. ``T2``
    raises every class probability of a sample to the same power ``1 / T2`` and renormalises,
    so it never moves an argmax: accuracy is exactly that of the mixture at ``T1``. Raises
    :class:`~activelabel.errors.InvalidArrayError` for bad logits or a temperature ``<= 0``.
    """
    t2 = _check_temperature(mixture_temperature)
    if t2 == 1.0:
        return predictive_probabilities(logits, temperature)
    return apply_temperature(mixture_log_probabilities(logits, temperature), t2)


def fit_mixture_sharpness(
    logits: ArrayLike | torch.Tensor, labels: ArrayLike | torch.Tensor, temperature: float = 1.0,
) -> float:
    """Fit the mixture temperature ``T2`` of :func:`calibrated_probabilities` for a fixed per-pass
    ``temperature`` ``T1``: the NLL-optimal temperature of ``log mean_s softmax(z_s / T1)``, read
    as the logits of one softmax (``logits`` ``[S, N, C]``, labels int ``[N]`` of a held-out
    labeled split). Returns a float in [:data:`MIN_MIXTURE_TEMPERATURE`, :data:`MAX_TEMPERATURE`].

    Why a second temperature: one ``T1`` scales every pass before the average, which changes
    how far the passes agree as well as how sharp each is; it cannot make an under-confident
    *mixture* sharper without also making each pass's disagreement louder. On the round's MNIST
    models (MC dropout, T = 20 passes, 3 seeds) the NLL-optimal ``T1`` left the mean at 1.4-2.0 %
    ECE even fitted on 5,000 images, where ``T2`` on top of it reached 0.6-0.7 % and ``T2`` alone
    (``T1 = 1``) 0.4-0.6 % (BENCHMARKS.md). Why LBFGS
    (:func:`fit_temperature`) suffices here, unlike for ``T1``: with ``T1`` fixed, the NLL is that
    of one softmax of fixed logits, convex in ``1 / T2``. Deterministic; float64. Raises
    :class:`~activelabel.errors.InvalidArrayError` for bad or empty inputs.
    """
    fitted = fit_temperature(mixture_log_probabilities(logits, temperature), labels)
    return min(max(fitted, MIN_MIXTURE_TEMPERATURE), MAX_TEMPERATURE)


def calibration_report(
    probs: ArrayLike, labels: ArrayLike, *, bins: int = 15
) -> CalibrationReport:
    """Accuracy, NLL, Brier, ECE and reliability bins of predictive probabilities ``[N, C]``.

    ``labels`` int ``[N]``. ECE uses ``bins`` equal-width confidence bins, right-closed
    (``(lower, upper]``; confidence 0 goes to the first bin) — the same binning as
    :func:`~activelabel.pipeline.metrics.expected_calibration_error`. Empty input gives NaN
    figures and empty bins. Raises :class:`~activelabel.errors.InvalidArrayError` for
    mis-shaped or non-finite probabilities or bad labels.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2 or not np.isfinite(p).all():
        raise InvalidArrayError(
            f"probabilities must be a finite [N, C] array with C >= 2 (average [S, N, C] over S "
            f"first); got shape {p.shape}"
        )
    y = _as_labels(labels, p.shape[0], p.shape[1])
    reliability = reliability_bins(p, y, bins)
    return CalibrationReport(
        accuracy=accuracy(p, y),
        nll=negative_log_likelihood(p, y),
        brier=brier_score(p, y),
        ece=ece_from_bins(reliability),
        bins=reliability,
    )


def calibration_before_after(
    val_logits: ArrayLike | torch.Tensor,
    val_labels: ArrayLike | torch.Tensor,
    test_logits: ArrayLike | torch.Tensor,
    test_labels: ArrayLike | torch.Tensor,
    *,
    bins: int = 15,
) -> tuple[float, CalibrationReport, CalibrationReport]:
    """Fit ``T`` on the validation split, report the test split before (``T = 1``) and after.

    Logits ``[N, C]`` or ``[S, N, C]`` (the two splits may differ in N, not in S or C); labels
    int ``[N]``. Returns ``(temperature, before, after)``. Errors: see :func:`fit_temperature`
    and :func:`calibration_report`.
    """
    temperature = fit_temperature(val_logits, val_labels)
    test = _as_logits(test_logits)
    before = calibration_report(predictive_probabilities(test, 1.0), test_labels, bins=bins)
    after = calibration_report(predictive_probabilities(test, temperature), test_labels, bins=bins)
    return temperature, before, after
