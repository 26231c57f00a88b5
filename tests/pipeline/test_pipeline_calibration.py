"""Temperature scaling (Guo et al. 2017) and calibration reports, with values worked out by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from activelabel.pipeline.calibration import (
    CalibrationReport,
    apply_temperature,
    calibration_before_after,
    calibration_report,
    fit_temperature,
    predictive_probabilities,
)
from activelabel.errors import InvalidArrayError


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _calibrated_set(n: int, c: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax IS the label distribution: labels are drawn from it."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=(n, c))
    p = _softmax(z)
    u = rng.random(n)[:, None]
    y = np.minimum((p.cumsum(axis=1) < u).sum(axis=1), c - 1)
    return z, y


def test_report_by_hand() -> None:
    probs = np.array([[0.7, 0.3], [0.05, 0.95]])
    labels = np.array([0, 0])
    report = calibration_report(probs, labels)
    assert isinstance(report, CalibrationReport)
    # hits: T, F
    assert report.accuracy == 0.5
    # -(ln 0.7 + ln 0.05) / 2 = (0.356675 + 2.995732) / 2 = 1.676204
    assert report.nll == pytest.approx(-(math.log(0.7) + math.log(0.05)) / 2)
    # (0.3^2 + 0.3^2 + 0.95^2 + 0.95^2) / 2 = (0.18 + 1.805) / 2 = 0.9925
    assert report.brier == pytest.approx(0.9925)
    # 15 bins: 0.7 in (0.6667, 0.7333] correct -> |1 - 0.7| = 0.3; 0.95 in (0.9333, 1] wrong
    # -> 0.95; ECE = (0.3 + 0.95) / 2 = 0.625
    assert report.ece == pytest.approx(0.625)
    filled = [b for b in report.bins if b.count]
    assert [(b.count, b.accuracy) for b in filled] == [(1, 1.0), (1, 0.0)]
    assert filled[0].lower == pytest.approx(10 / 15) and filled[0].upper == pytest.approx(11 / 15)
    assert filled[0].confidence == pytest.approx(0.7) and filled[1].confidence == pytest.approx(0.95)


def test_reliability_bins_sum_to_n() -> None:
    z, y = _calibrated_set(1234)
    report = calibration_report(_softmax(z), y)
    assert len(report.bins) == 15
    assert sum(b.count for b in report.bins) == 1234
    assert len(calibration_report(_softmax(z), y, bins=7).bins) == 7


def test_temperature_fixes_an_overconfident_model() -> None:
    z, y = _calibrated_set(4000, seed=1)
    overconfident = 3.0 * z  # same argmax, probabilities far too peaked
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(3.0, rel=0.1)
    before = calibration_report(_softmax(overconfident), y)
    after = calibration_report(apply_temperature(overconfident, t), y)
    assert after.nll < before.nll - 0.1
    assert after.ece < before.ece / 2
    assert after.brier < before.brier
    assert after.accuracy == before.accuracy  # T never changes an argmax of one pass


def test_calibrated_model_keeps_t_near_one() -> None:
    z, y = _calibrated_set(20_000, seed=2)
    assert fit_temperature(z, y) == pytest.approx(1.0, abs=0.06)


def test_underconfident_model_gets_t_below_one() -> None:
    z, y = _calibrated_set(4000, seed=3)
    assert fit_temperature(z / 2.0, y) == pytest.approx(0.5, rel=0.1)


def test_fit_lowers_validation_nll_at_the_optimum() -> None:
    z, y = _calibrated_set(2000, seed=4)
    z = 2.0 * z
    t = fit_temperature(z, y)

    def nll(temp: float) -> float:
        return calibration_report(apply_temperature(z, temp), y).nll

    assert nll(t) <= nll(t * 1.05) and nll(t) <= nll(t / 1.05) and nll(t) < nll(1.0)


def test_mc_logits_scale_each_pass_then_average() -> None:
    rng = np.random.default_rng(5)
    z, y = _calibrated_set(3000, seed=5)
    passes = 3.0 * (z[None] + rng.normal(scale=0.3, size=(8, 3000, 5)))  # [S, N, C]
    probs = apply_temperature(passes, 2.0)
    assert probs.shape == (8, 3000, 5)
    np.testing.assert_allclose(probs[3], _softmax(passes[3] / 2.0))
    np.testing.assert_allclose(predictive_probabilities(passes, 2.0), probs.mean(axis=0))
    t = fit_temperature(passes, y)
    assert 2.0 < t < 4.0
    before = calibration_report(predictive_probabilities(passes), y)
    after = calibration_report(predictive_probabilities(passes, t), y)
    assert after.nll < before.nll


def test_before_after_on_separate_splits() -> None:
    z, y = _calibrated_set(6000, seed=6)
    logits = 2.5 * z
    t, before, after = calibration_before_after(logits[:3000], y[:3000], logits[3000:], y[3000:])
    assert t == pytest.approx(2.5, rel=0.12)
    assert before.accuracy == after.accuracy
    assert after.nll < before.nll and after.ece < before.ece
    assert sum(b.count for b in after.bins) == 3000
    # JSON-ready for storage: no NaN even with empty bins
    json.dumps(after.to_dict(), allow_nan=False)
    assert after.to_dict()["bins"][0]["confidence"] is None or after.bins[0].count > 0


def test_accepts_torch_tensors() -> None:
    z, y = _calibrated_set(500, seed=7)
    t_np = fit_temperature(2.0 * z, y)
    t_torch = fit_temperature(torch.from_numpy(2.0 * z).float(), torch.from_numpy(y))
    assert t_torch == pytest.approx(t_np, rel=1e-3)


def test_perfectly_separated_validation_stays_bounded() -> None:
    z = np.array([[5.0, 0.0], [0.0, 5.0]] * 10)
    y = np.array([0, 1] * 10)
    t = fit_temperature(z, y)
    assert 0.01 <= t < 1.0  # sharper is better here, but never below the bound


def test_bad_inputs_raise_typed_errors() -> None:
    z, y = _calibrated_set(10)
    with pytest.raises(InvalidArrayError, match="labels must lie in"):
        fit_temperature(z, y + 5)
    with pytest.raises(InvalidArrayError, match="match the logits"):
        fit_temperature(z, y[:-1])
    with pytest.raises(InvalidArrayError, match="empty"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    with pytest.raises(InvalidArrayError, match="shaped"):
        fit_temperature(np.zeros(5), np.zeros(5, dtype=np.int64))
    with pytest.raises(InvalidArrayError, match="non-finite"):
        apply_temperature(np.array([[np.nan, 0.0]]), 1.0)
    with pytest.raises(InvalidArrayError, match="temperature"):
        apply_temperature(z, 0.0)
    with pytest.raises(InvalidArrayError, match="average"):
        calibration_report(np.zeros((2, 3, 4)), np.zeros(3, dtype=np.int64))


def _round_calibration(x: np.ndarray, y: np.ndarray) -> dict:
    from activelabel.campaign.calibrate import fit_round_calibration

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[4.0, 0.0], [0.0, 4.0]]))  # predicts the larger coordinate
    return fit_round_calibration(model, x, y, None, None, torch.device("cpu"))


def test_round_keeps_t_1_when_the_held_out_split_has_no_error() -> None:
    # Every validation image is predicted right: the NLL only asks for T -> 0 (the fit gave
    # T = 0.09 in a report test and doubled the test NLL), so no temperature is fitted.
    x = np.array([[[[1.0, 0.0]]], [[[0.0, 1.0]]], [[[0.9, 0.2]]]], dtype=np.float32)
    result = _round_calibration(x, np.array([0, 1, 0]))
    assert result["temperature"] == 1.0 and result["validation_errors"] == 0
    assert "all predicted right" in result["skipped"]


def test_round_fits_t_when_the_held_out_split_shows_over_confidence() -> None:
    # 200 samples whose true P(class 1) is sigmoid(m), scored 4x too sharply: many errors, and a
    # temperature learned on either half predicts the other half better, so T (about 4) is kept.
    rng = np.random.default_rng(0)
    m = rng.normal(size=200)
    y = (rng.random(200) < 1 / (1 + np.exp(-m))).astype(np.int64)
    x = np.stack([np.zeros(200), m], axis=1)[:, None, None, :].astype(np.float32)
    result = _round_calibration(x, y)
    assert result["validation_errors"] > 40 and "skipped" not in result
    assert 2.5 < result["temperature"] < 6.0


def test_round_keeps_t_1_when_a_half_fitted_temperature_does_not_predict_the_other_half() -> None:
    # One wrong answer among confident right ones: the half without it asks for T -> 0, which
    # makes the other half's error ruinous; the split cannot tell T (we saw T = 0.26 from one
    # error in 75 double the test NLL).
    x = np.array([[[[1.0, 0.0]]]] * 10 + [[[[0.0, 1.0]]]] * 9 + [[[[1.0, 0.0]]]], dtype=np.float32)
    y = np.array([0] * 10 + [1] * 9 + [1])
    result = _round_calibration(x, y)
    assert result["validation_errors"] == 1 and result["temperature"] == 1.0
    assert "a half of the split without an error" in result["skipped"]


def test_round_keeps_t_1_when_either_half_fitted_temperature_worsens_the_other() -> None:
    # Both halves hold errors, of opposite kinds: half A's are confident, half B's near ties.
    # B asks for a sharper model, which makes A's confident errors ruinous: T = 1 is kept.
    halves = np.random.default_rng([0, 0x7E]).permutation(20) % 2
    x, y = [], []
    for i in range(20):
        wrong = i in (int(np.flatnonzero(halves == 0)[0]), int(np.flatnonzero(halves == 0)[1]),
                      int(np.flatnonzero(halves == 1)[0]), int(np.flatnonzero(halves == 1)[1]))
        margin = 1.0 if halves[i] == 0 else 0.02
        x.append([[[margin if wrong else 1.0, 0.0]]])
        y.append(1 if wrong else 0)
    result = _round_calibration(np.array(x, dtype=np.float32), np.array(y))
    assert result["validation_errors"] == 4 and result["temperature"] == 1.0
    assert "made the other half's NLL worse" in result["skipped"]


def _under_confident_mixture(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(deterministic logits [N, C], per-pass logits [S, N, C], labels [N]): one pass predicts
    the right class 85 % of the time with margin 4 (over-confident), while 20 MC passes add
    Gaussian noise of std 3 to the logits: their mean softmax is right more often than it is
    sure (confidence ~0.62, accuracy ~0.87), i.e. under-confident as a mixture."""
    rng = np.random.default_rng(seed)
    n, c, s = 600, 4, 20
    y = rng.integers(0, c, n)
    predicted = np.where(rng.random(n) < 0.85, y, (y + rng.integers(1, c, n)) % c)
    base = 4.0 * np.eye(c)[predicted]
    return base, base[None] + 3.0 * rng.standard_normal((s, n, c)), y


def test_mixture_temperature_sharpens_an_under_confident_mc_predictive_where_a_one_pass_fit_would_not() -> None:
    from activelabel.pipeline.calibration import fit_mixture_temperature
    from activelabel.pipeline.metrics import negative_log_likelihood as nll

    deterministic, passes, y = _under_confident_mixture()
    mean = predictive_probabilities(passes)
    assert mean.max(-1).mean() < (mean.argmax(-1) == y).mean() - 0.2  # under-confident as a mixture
    t_mc = fit_mixture_temperature(passes, y)
    t_one = fit_temperature(deterministic, y)
    assert t_mc == pytest.approx(0.415, abs=0.01) and t_mc < 1  # sharpen each pass
    assert t_one == pytest.approx(1.353, abs=0.01) and t_one > 1  # the one pass is over-confident
    at_one, fitted, one_pass = (nll(predictive_probabilities(passes, t), y) for t in (1.0, t_mc, t_one))
    assert fitted == pytest.approx(0.7106, abs=5e-4) and at_one == pytest.approx(0.7252, abs=5e-4)
    assert fitted < at_one < one_pass  # the one-pass temperature makes the MC predictive worse
    # The search found the minimum: no temperature on a fine grid does better.
    grid = np.exp(np.linspace(np.log(0.25), np.log(5), 400))  # the mixture floor is 0.25
    assert fitted <= min(nll(predictive_probabilities(passes, t), y) for t in grid) + 1e-6
    # S = 1 is the one-softmax case: the same optimum as LBFGS.
    assert fit_mixture_temperature(deterministic, y) == pytest.approx(t_one, rel=1e-3)


def test_round_calibration_of_mc_passes_fits_and_reports_the_mc_predictive() -> None:
    from activelabel.campaign.calibrate import describe_predictor, fit_round_calibration
    from activelabel.pipeline.prediction import predict_probabilities

    # A linear model with input dropout: its MC passes' mean is the predictor fitted for.
    rng = np.random.default_rng(1)
    m = rng.normal(size=(400, 8))
    y = (m.sum(axis=1) + rng.normal(scale=1.0, size=400) > 0).astype(np.int64)
    x = m[:, None, None, :].astype(np.float32)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    with torch.no_grad():
        model[2].weight.copy_(torch.tensor([[-0.3] * 8, [0.3] * 8]))
        model[2].bias.zero_()
    yard = predict_probabilities(model, x[200:], samples=16, device=torch.device("cpu"), seed=7, logits=True)
    result = fit_round_calibration(model, x[:200], y[:200], yard, y[200:], torch.device("cpu"),
                                   samples=16, seed=7, method="mc_dropout")
    assert result["predictor"] == {"method": "mc_dropout", "passes": 16, "members": 1}
    assert describe_predictor(result["predictor"]) == "mean of 16 MC-dropout passes"
    val = predict_probabilities(model, x[:200], samples=16, device=torch.device("cpu"), seed=7, logits=True)
    from activelabel.pipeline.calibration import fit_mixture_temperature

    assert "skipped" not in result and result["temperature"] == pytest.approx(fit_mixture_temperature(val, y[:200]))
    for when, t in (("before", 1.0), ("after", result["temperature"])):
        expected = calibration_report(predictive_probabilities(yard, t), y[200:]).to_dict()
        assert result[when]["nll"] == pytest.approx(expected["nll"]) and result[when]["ece"] == pytest.approx(
            expected["ece"])
    assert result["after"]["nll"] < result["before"]["nll"]
    deterministic = fit_round_calibration(model, x[:200], y[:200], None, None, torch.device("cpu"))
    assert deterministic["predictor"] == {"method": "deterministic", "passes": 1, "members": 1}
    assert describe_predictor(deterministic["predictor"]) == describe_predictor(None) == "one deterministic pass"
