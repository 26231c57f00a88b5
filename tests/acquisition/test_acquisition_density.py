"""Class-conditional Gaussian density (DDU): hand-computed values, separation, rank deficiency."""

from __future__ import annotations

import math

import numpy as np
import pytest

from activelabel.acquisition.density import (
    GaussianDensity,
    density_score,
    density_scores,
    fit_class_gaussians,
    is_ood,
    ood_threshold,
)
from activelabel.errors import InvalidArrayError
from activelabel.pipeline.metrics import auroc


def _normal_logpdf(x: float, mean: float, var: float) -> float:
    return -0.5 * (math.log(2 * math.pi * var) + (x - mean) ** 2 / var)


def test_one_dimensional_log_density_by_hand() -> None:
    # class 0: {0, 2} -> mean 1, ML variance 1; class 1: {10, 14} -> mean 12, variance 4.
    # 4 samples, 2 per class -> priors 1/2 each.
    z = np.array([[0.0], [2.0], [10.0], [14.0]])
    y = np.array([0, 0, 1, 1])
    density = fit_class_gaussians(z, y, num_classes=2)
    assert isinstance(density, GaussianDensity)
    np.testing.assert_allclose(density.means[:, 0], [1.0, 12.0])
    np.testing.assert_allclose(density.cholesky[:, 0, 0] ** 2, [1.0, 4.0])
    np.testing.assert_array_equal(density.jitters, 0.0)
    for x in (1.0, 5.0, 12.0, -30.0):
        # log(0.5 N(x; 1, 1) + 0.5 N(x; 12, 4)), written without underflow
        expected = math.log(0.5) + np.logaddexp(_normal_logpdf(x, 1.0, 1.0), _normal_logpdf(x, 12.0, 4.0))
        assert density.log_density([[x]])[0] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # x = 1: 0.5 * N(1; 1, 1) + 0.5 * N(1; 12, 4) = 0.5 * 0.398942 + 0.5 * 5.8e-9 -> ln = -1.612086
    assert density.log_density([[1.0]])[0] == pytest.approx(-1.612086, abs=1e-6)
    assert density_score(density, [[1.0]])[0] == pytest.approx(1.612086, abs=1e-6)


def test_full_covariance_matches_closed_form() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 3)) @ np.array([[2.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.0, 0.3, 0.2]])
    y = np.zeros(50, dtype=np.int64)
    density = fit_class_gaussians(z, y, num_classes=1)
    mu, cov = z.mean(axis=0), np.cov(z.T, bias=True)
    x = rng.normal(size=(4, 3))
    diff = x - mu
    expected = -0.5 * (
        3 * math.log(2 * math.pi)
        + np.linalg.slogdet(cov)[1]
        + np.einsum("md,de,me->m", diff, np.linalg.inv(cov), diff)
    )
    np.testing.assert_allclose(density.log_density(x), expected, rtol=1e-10)


def _clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[5.0, 0, 0, 0, 0], [-5.0, 0, 0, 0, 0]])
    y = np.repeat([0, 1], 100)
    z = centres[y] + rng.normal(scale=0.5, size=(200, 5))
    return z, y, rng.normal(scale=0.5, size=(60, 5))


def test_separates_clusters_from_far_points() -> None:
    z, y, _ = _clusters()
    rng = np.random.default_rng(1)
    density = fit_class_gaussians(z, y, num_classes=2)
    in_dist = np.array([[5.0, 0, 0, 0, 0], [-5.0, 0, 0, 0, 0]])[rng.integers(0, 2, 100)] + rng.normal(
        scale=0.5, size=(100, 5)
    )
    far = rng.normal(size=(100, 5)) * 2 + np.array([0, 40.0, 0, 0, 0])
    # between the clusters is unfamiliar too (this is where softmax is confidently unsure)
    between = rng.normal(scale=0.5, size=(100, 5))
    for ood in (far, between):
        s_in, s_out = density_score(density, in_dist), density_score(density, ood)
        assert auroc(s_in, s_out) == 1.0
    threshold = ood_threshold(density, z, percentile=5)
    assert is_ood(density, far, threshold).all()
    assert is_ood(density, z, threshold).mean() == pytest.approx(0.05, abs=0.011)
    assert is_ood(density, in_dist, threshold).mean() < 0.2


def test_density_scores_is_fit_then_score() -> None:
    z, y, pool = _clusters()
    expected = density_score(fit_class_gaussians(z, y, 2), pool)
    np.testing.assert_array_equal(density_scores(z, y, 2, pool), expected)


def test_rank_deficient_classes_get_jitter_not_errors() -> None:
    # D = 20 features, classes of 3 and 5 samples (n_c <= D -> singular covariances).
    rng = np.random.default_rng(2)
    z = np.concatenate([rng.normal(loc=3.0, size=(3, 20)), rng.normal(loc=-3.0, size=(5, 20))])
    y = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    density = fit_class_gaussians(z, y, num_classes=2)
    assert (density.jitters > 0).all()
    assert not density.pooled.any()
    train = density.log_density(z)
    far = density.log_density(rng.normal(loc=30.0, size=(10, 20)))
    assert np.isfinite(train).all() and np.isfinite(far).all()
    assert far.max() < train.min()


def test_duplicate_features_in_a_class() -> None:
    # A class whose samples are identical has a zero covariance: jitter from the pooled scale.
    z = np.array([[1.0, 1.0], [1.0, 1.0], [5.0, 5.0], [6.0, 4.0], [5.5, 5.2]])
    y = np.array([0, 0, 1, 1, 1])
    density = fit_class_gaussians(z, y, num_classes=2)
    assert density.jitters[0] > 0
    assert np.isfinite(density.log_density(z)).all()


def test_single_sample_class_borrows_pooled_covariance() -> None:
    # class 0: {0, 2} (variance 1), class 1: {10, 14} (variance 4), class 2: {30} alone.
    # pooled within-class covariance = (2 * 1 + 2 * 4) / 4 = 2.5
    z = np.array([[0.0], [2.0], [10.0], [14.0], [30.0]])
    y = np.array([0, 0, 1, 1, 2])
    density = fit_class_gaussians(z, y, num_classes=4)  # class 3 never labeled: no component
    np.testing.assert_array_equal(density.classes, [0, 1, 2])
    np.testing.assert_array_equal(density.pooled, [False, False, True])
    assert density.cholesky[2, 0, 0] ** 2 == pytest.approx(2.5)
    np.testing.assert_allclose(np.exp(density.log_priors), [0.4, 0.4, 0.2])
    assert np.isfinite(density.log_density([[30.0], [100.0]])).all()


def test_bad_inputs_raise_typed_errors() -> None:
    z, y, _ = _clusters()
    with pytest.raises(InvalidArrayError, match="labels must lie in"):
        fit_class_gaussians(z, y, num_classes=1)
    with pytest.raises(InvalidArrayError, match="match the features"):
        fit_class_gaussians(z, y[:-1], num_classes=2)
    with pytest.raises(InvalidArrayError, match="non-finite"):
        bad = z.copy()
        bad[0, 0] = np.nan
        fit_class_gaussians(bad, y, num_classes=2)
    with pytest.raises(InvalidArrayError, match="integers"):
        fit_class_gaussians(z, y.astype(float), num_classes=2)
    with pytest.raises(InvalidArrayError, match="at least 2"):
        fit_class_gaussians(z[:1], y[:1], num_classes=2)
    density = fit_class_gaussians(z, y, num_classes=2)
    with pytest.raises(InvalidArrayError, match="dimension 4"):
        density.log_density(np.zeros((3, 4)))
    with pytest.raises(InvalidArrayError, match="percentile"):
        ood_threshold(density, z, percentile=101)
    with pytest.raises(InvalidArrayError, match="empty"):
        ood_threshold(density, np.zeros((0, 5)))
    assert density.log_density(np.zeros((0, 5))).shape == (0,)
