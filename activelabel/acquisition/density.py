"""Feature density: how familiar an input looks to the model, from its penultimate-layer features.

Softmax confidence fails mostly where unfamiliar inputs land among familiar ones in the last
layer's features (Pearce et al. 2021, "Understanding Softmax Confidence and Uncertainty"). DDU
(Mukhoti et al. 2021, "Deep Deterministic Uncertainty") measures familiarity directly: fit one
Gaussian per class on the features of the labeled set, and read the mixture's log density
``log q(z) = logsumexp_c [log π_c + log N(z; μ_c, Σ_c)]`` at a new input's features ``z``.
Low density = unlike anything labeled: either worth a label (acquisition) or out of
distribution (a flag). Unlike BALD, it needs one deterministic pass, not T.

Conventions: features are float ``[N, D]`` (one row per sample, any scale), labels int ``[N]``
in ``[0, num_classes)``. Densities are natural-log densities in nats (per unit feature volume,
so only comparable between inputs of the same model). Everything is numpy, float64.

Numerical honesty (after DDU's ``utils/gmm_utils.py``): a class with fewer samples than
feature dimensions (``n_c <= D``, common early in active learning) has a singular covariance.
:func:`fit_class_gaussians` adds jitter to its diagonal, trying ``0, 1e-20, 1e-19, ..., 1``
times the class's mean feature variance, and keeps the first that makes the Cholesky factor
exist with every pivot above ``1e-12`` of that scale. The jitter used per class is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from activelabel.acquisition.validation import as_probabilities
from activelabel.errors import InvalidArrayError

#: Relative jitters tried in order on each class covariance's diagonal (x mean variance).
DEFAULT_JITTERS: tuple[float, ...] = (0.0,) + tuple(10.0**e for e in range(-20, 1))
#: A Cholesky factor is accepted only if every squared pivot exceeds this x the class scale.
_MIN_PIVOT = 1e-12
_LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class GaussianDensity:
    """A class-conditional Gaussian mixture over features (one full-covariance Gaussian per class).

    ``classes`` int64 ``[K]``: the class ids present in the fit (absent classes have no
    component); ``means`` ``[K, D]``; ``cholesky`` ``[K, D, D]`` lower-triangular factors of
    the (jittered) covariances; ``log_priors`` ``[K]`` (``log n_c / N``); ``jitters`` ``[K]``
    the absolute jitter added to each diagonal; ``pooled`` ``[K]`` bool, True where the class
    had a single sample and borrowed the pooled covariance.
    """

    classes: np.ndarray
    means: np.ndarray
    cholesky: np.ndarray
    log_priors: np.ndarray
    jitters: np.ndarray
    pooled: np.ndarray

    @property
    def dim(self) -> int:
        """Feature dimension ``D``."""
        return int(self.means.shape[1])

    def class_log_densities(self, features: ArrayLike) -> np.ndarray:
        """``log π_c + log N(z; μ_c, Σ_c)`` for each input and class: float64 ``[M, K]`` (nats).

        Raises :class:`~activelabel.errors.InvalidArrayError` for features that are not a
        finite ``[M, D]`` array with this density's ``D``.
        """
        z = _as_features(features, "features")
        if z.shape[1] != self.dim:
            raise InvalidArrayError(
                f"features have dimension {z.shape[1]} but the density was fitted on "
                f"dimension {self.dim}; pass the same layer's features"
            )
        from scipy.linalg import solve_triangular  # here: the registry (every command's strategy check) needs no scipy

        out = np.empty((z.shape[0], self.classes.size))
        for k in range(self.classes.size):
            chol = self.cholesky[k]
            # Mahalanobis distance via the triangular factor: |L^-1 (z - μ)|^2 (a triangular
            # solve, O(D^2 M), not a general one: pools are scored chunk by chunk with this).
            white = solve_triangular(chol, (z - self.means[k]).T, lower=True, check_finite=False)  # [D, M]
            maha = np.einsum("dm,dm->m", white, white)
            log_det = 2.0 * np.sum(np.log(np.diag(chol)))
            out[:, k] = self.log_priors[k] - 0.5 * (self.dim * _LOG_2PI + log_det + maha)
        return out

    def log_density(self, features: ArrayLike) -> np.ndarray:
        """Mixture log density ``log q(z)`` of each input: float64 ``[M]`` in nats (logsumexp over classes)."""
        per_class = self.class_log_densities(features)
        if per_class.shape[0] == 0:
            return np.zeros(0)
        peak = per_class.max(axis=1, keepdims=True)
        return (peak + np.log(np.exp(per_class - peak).sum(axis=1, keepdims=True)))[:, 0]


def _as_features(features: ArrayLike, what: str) -> np.ndarray:
    """A finite float64 ``[N, D]`` copy of ``features``, or a typed error naming ``what``."""
    try:
        z = np.array(features, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArrayError(f"{what} must be a numeric array shaped [N, D]: {exc}") from exc
    if z.ndim != 2 or z.shape[1] < 1:
        raise InvalidArrayError(f"{what} must be shaped [N, D] with D >= 1; got shape {z.shape}")
    if not np.isfinite(z).all():
        raise InvalidArrayError(
            f"{what} contain {int((~np.isfinite(z)).sum())} non-finite values (NaN or inf)"
        )
    return z


def _cholesky_with_jitter(
    cov: np.ndarray, jitters: tuple[float, ...], fallback_scale: float
) -> tuple[np.ndarray, float]:
    """Lower Cholesky factor of ``cov + j·scale·I`` for the first relative jitter ``j`` that works."""
    d = cov.shape[0]
    scale = float(np.trace(cov)) / d
    if not scale > 0:
        scale = fallback_scale
    eye = np.eye(d)
    for j in jitters:
        added = j * scale
        try:
            chol = np.linalg.cholesky(cov + added * eye)
        except np.linalg.LinAlgError:
            continue
        if np.all(np.diag(chol) ** 2 > _MIN_PIVOT * scale):
            return chol, added
    raise InvalidArrayError(
        f"a class covariance stays singular even with jitter {jitters[-1]:g} x its scale "
        f"({scale:.3g}); pass larger jitters or fewer feature dimensions"
    )


def fit_class_gaussians(
    features: ArrayLike,
    labels: ArrayLike,
    num_classes: int,
    *,
    jitters: tuple[float, ...] = DEFAULT_JITTERS,
) -> GaussianDensity:
    """Fit one Gaussian per class on labeled features (DDU, Mukhoti et al. 2021).

    ``features`` ``[N, D]`` (penultimate-layer features of the labeled set), ``labels`` int
    ``[N]`` in ``[0, num_classes)``. Each class ``c`` with ``n_c >= 2`` samples gets its own
    mean and maximum-likelihood covariance (``1/n_c``, shared-nothing). A class with a single
    sample cannot estimate a covariance; it keeps its sample as mean and borrows the *pooled*
    within-class covariance (the average of the other classes' scatter), the least surprising
    shape available — or the covariance of all features when no class has two samples. A class
    with no sample gets no component (its prior would be 0 anyway). Priors are ``n_c / N``.
    Jitter (module docstring) makes rank-deficient covariances (``n_c <= D``) usable.

    Raises :class:`~activelabel.errors.InvalidArrayError` for non-finite or mis-shaped
    features, labels that are not integers in range or do not match ``N``, fewer than 2
    samples in all, or a covariance that no jitter can fix.
    """
    z = _as_features(features, "labeled features")
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != z.shape[0]:
        raise InvalidArrayError(
            f"labels must be shaped [N] = [{z.shape[0]}] to match the features; got {y.shape}"
        )
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise InvalidArrayError(f"labels must be integers; got dtype {y.dtype}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise InvalidArrayError(f"num_classes must be a positive integer; got {num_classes!r}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise InvalidArrayError(
            f"labels must lie in [0, {num_classes}); got values from {y.min()} to {y.max()}"
        )
    n, d = z.shape
    if n < 2:
        raise InvalidArrayError(f"need at least 2 labeled samples to fit a density; got {n}")

    present = np.unique(y).astype(np.int64)
    counts = np.array([(y == c).sum() for c in present])
    means = np.stack([z[y == c].mean(axis=0) for c in present])
    scatter = [
        (z[y == c] - means[i]).T @ (z[y == c] - means[i]) for i, c in enumerate(present)
    ]
    multi = counts >= 2
    if multi.any():
        pooled_cov = sum(s for s, m in zip(scatter, multi) if m) / counts[multi].sum()
    else:
        centred = z - z.mean(axis=0)
        pooled_cov = centred.T @ centred / n
    fallback_scale = float(np.trace(pooled_cov)) / d
    if not fallback_scale > 0:
        fallback_scale = 1.0

    chols, added = [], []
    for i in range(present.size):
        cov = scatter[i] / counts[i] if multi[i] else pooled_cov
        chol, jitter = _cholesky_with_jitter(cov, jitters, fallback_scale)
        chols.append(chol)
        added.append(jitter)
    return GaussianDensity(
        classes=present,
        means=means,
        cholesky=np.stack(chols),
        log_priors=np.log(counts / n),
        jitters=np.asarray(added),
        pooled=~multi,
    )


def density_score(density: GaussianDensity, features: ArrayLike) -> np.ndarray:
    """Acquisition score ``-log q(z)``: float64 ``[M]`` in nats, higher = more unfamiliar.

    Same orientation as every score in this package (higher = asked first).
    """
    return -density.log_density(features)


def density_scores(
    labeled_features: ArrayLike,
    labels: ArrayLike,
    num_classes: int,
    pool_features: ArrayLike,
) -> np.ndarray:
    """The ``density`` strategy in one call: fit on the labeled set, score the pool.

    ``labeled_features`` ``[L, D]`` and ``labels`` ``[L]`` of the labeled set,
    ``pool_features`` ``[N, D]`` of the pool (same layer, same model). Returns
    float64 ``[N]`` scores ``-log q(z)`` (higher = select first); pair it with
    :func:`~activelabel.acquisition.select_top_k`. It is not a registered ``Strategy`` because
    it needs features, not ``[T, N, C]`` probabilities. Errors: see :func:`fit_class_gaussians`.
    """
    return density_score(fit_class_gaussians(labeled_features, labels, num_classes), pool_features)


def ood_threshold(
    density: GaussianDensity, reference_features: ArrayLike, percentile: float = 5.0
) -> float:
    """Log-density threshold below which an input is called out of distribution (nats).

    The ``percentile``-th percentile (0-100) of the reference set's log densities: with 5, about
    5 % of reference inputs would be flagged. The reference is usually the labeled set the
    density was fitted on; its in-sample densities are optimistic (most so for classes with few
    samples), so a held-out labeled split gives a more honest threshold when one exists.
    Raises :class:`~activelabel.errors.InvalidArrayError` for an empty reference set or a
    percentile outside [0, 100].
    """
    if not 0.0 <= float(percentile) <= 100.0:
        raise InvalidArrayError(f"percentile must lie in [0, 100]; got {percentile!r}")
    log_q = density.log_density(reference_features)
    if log_q.size == 0:
        raise InvalidArrayError("cannot set an OOD threshold from an empty reference set")
    return float(np.percentile(log_q, percentile))


def is_ood(density: GaussianDensity, features: ArrayLike, threshold: float) -> np.ndarray:
    """Out-of-distribution flag per input: bool ``[M]``, True where ``log q(z) < threshold``."""
    return density.log_density(features) < threshold


def out_of_fold_log_densities(
    features: ArrayLike,
    labels: ArrayLike,
    num_classes: int,
    *,
    folds: int = 5,
    seed: int = 0,
    jitters: tuple[float, ...] = DEFAULT_JITTERS,
) -> np.ndarray:
    """Each labeled input's log density under a mixture fitted *without* it: float64 ``[N]`` nats.

    The labeled set is split into ``folds`` seeded random folds (fewer when ``N`` is small);
    each fold is scored by :func:`fit_class_gaussians` on the other folds. Why: in-sample
    densities are optimistic, and grossly so while a class has fewer samples than feature
    dimensions (its Gaussian then sits on the very points it is asked about), so a threshold
    set on them would flag most of the pool. Out-of-fold densities are what a new input from
    the labeled distribution would get. Raises :class:`~activelabel.errors.InvalidArrayError`
    as :func:`fit_class_gaussians` does, or when fewer than 4 labeled samples are given.
    """
    z = _as_features(features, "labeled features")
    y = np.asarray(labels)
    n = z.shape[0]
    if n < 4:
        raise InvalidArrayError(f"need at least 4 labeled samples for out-of-fold densities; got {n}")
    k = max(2, min(int(folds), n // 2))
    fold_of = np.random.default_rng(seed).permutation(n) % k
    out = np.empty(n)
    for f in range(k):
        held = fold_of == f
        fitted = fit_class_gaussians(z[~held], y[~held], num_classes, jitters=jitters)
        out[held] = fitted.log_density(z[held])
    return out


@dataclass(frozen=True)
class PoolFeatures:
    """What the ``density`` strategy scores: the pool's penultimate features ``[N, D]`` and
    the :class:`GaussianDensity` fitted on the labeled set's features of the same model."""

    density: GaussianDensity
    features: np.ndarray


def density_strategy_score(
    probs: np.ndarray, *, rng: np.random.Generator | None = None, features: PoolFeatures | None = None
) -> np.ndarray:
    """The registered ``density`` strategy: ``-log q(z)`` per pool sample, float64 ``[N]`` nats.

    ``probs`` ``[T, N, C]`` is validated and fixes ``N`` (the scores come from ``features``, not from the
    softmax: that is the point, Mukhoti et al. 2021); ``rng`` is unused (deterministic).
    Raises :class:`~activelabel.errors.InvalidProbabilitiesError` for bad ``probs`` and
    :class:`~activelabel.errors.InvalidArrayError` when ``features`` is missing or its row
    count differs from ``N``.
    """
    n = as_probabilities(probs).shape[1]  # the same input contract as every strategy
    if features is None:
        raise InvalidArrayError(
            "the density strategy scores penultimate-layer features: pass features=PoolFeatures(...)"
        )
    if len(features.features) != n:
        raise InvalidArrayError(
            f"features have {len(features.features)} rows but the probabilities {n} samples; "
            "pass the same pool chunk's features"
        )
    if len(features.features) == 0:
        return np.zeros(0)
    return density_score(features.density, features.features)
