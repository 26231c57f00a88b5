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
    check = result["check"]  # each fold, scored under a T fitted on the other four, beats T = 1
    assert check["folds"] == 5 and all(2.5 < t < 6.0 for t in check["fold_temperatures"])
    assert max(check["fold_errors"]) - min(check["fold_errors"]) <= 1
    assert check["out_of_fold_nll"] < check["nll_at_1"] - 0.1


@pytest.mark.parametrize("errors", [1, 2, 4])
def test_round_keeps_t_1_when_the_held_out_split_has_fewer_errors_than_folds(errors: int) -> None:
    # A few wrong answers among confident right ones: a temperature fitted to them alone (we saw
    # T = 0.26 from one error in 75 double the test NLL). Under MIN_ERRORS = FOLDS = 5 the round
    # does not even try, and says how many errors it saw and needs.
    from activelabel.campaign.calibrate import FOLDS, MIN_ERRORS

    assert MIN_ERRORS == FOLDS == 5
    x = np.array([[[[1.0, 0.0]]]] * 10 + [[[[0.0, 1.0]]]] * 9 + [[[[1.0, 0.0]]]] * errors, dtype=np.float32)
    y = np.array([0] * 10 + [1] * 9 + [1] * errors)
    result = _round_calibration(x, y)
    assert result["validation_errors"] == errors and result["temperature"] == 1.0 and "check" not in result
    assert result["skipped"] == (
        f"only {errors} of the {19 + errors} held-out labels are predicted wrong (the round needs 5, one per "
        "cross-validation fold), and a temperature fitted to so few errors is fitted to them alone; T = 1 kept")


def _one_ruinous_error_among_near_ties() -> tuple[np.ndarray, np.ndarray]:
    """40 confident right answers (logit gap 4), 4 near-tie errors (gap 0.04 the wrong way) and one
    confident error (gap 12 the wrong way), as images of the 4 x identity model."""
    x = [[[[1.0, 0.0]]]] * 20 + [[[[0.0, 1.0]]]] * 20 + [[[[0.51, 0.5]]]] * 4 + [[[[3.0, 0.0]]]]
    y = [0] * 20 + [1] * 20 + [1] * 4 + [1]
    return np.array(x, dtype=np.float32), np.array(y)


def test_round_keeps_t_1_when_temperatures_fitted_on_other_folds_predict_a_fold_worse() -> None:
    # The near ties ask for a sharper model (T ~ 0.5), which doubles the confident error's NLL
    # (12 -> ~24 nats) in the fold that holds it; the folds fitted with it ask for a softer one,
    # which costs the confident right answers. Out of fold, no temperature beats T = 1.
    from activelabel.campaign.calibrate import cross_validated_nll, error_stratified_folds

    x, y = _one_ruinous_error_among_near_ties()
    result = _round_calibration(x, y)
    assert result["validation_errors"] == 5 and result["temperature"] == 1.0
    check = result["check"]
    assert check["fold_errors"] == [1, 1, 1, 1, 1]  # stratified: one error per fold
    ruinous = error_stratified_folds(x[:, 0, 0].argmax(-1) != y, seed=0)[-1]  # the confident error's fold
    others = [t for k, t in enumerate(check["fold_temperatures"]) if k != ruinous]
    assert 0.4 < check["fold_temperatures"][ruinous] < 0.7  # fitted without the confident error: sharpen
    assert all(1.5 < t < 2.0 for t in others)  # fitted with it: soften
    assert check["nll_at_1"] == pytest.approx(0.3462, abs=1e-4)
    assert check["out_of_fold_nll"] == pytest.approx(0.6224, abs=1e-4)  # nearly double
    assert result["skipped"] == (
        "temperatures fitted on 4 of 5 folds of the 45 held-out labels (5 wrong) predicted the left-out folds no "
        f"better than T = 1 (out-of-fold NLL {check['nll_at_1']:.4f} -> {check['out_of_fold_nll']:.4f}): the split "
        "cannot tell a temperature; T = 1 kept")
    logits = 4.0 * x[:, 0, 0][None].astype(np.float64)
    assert cross_validated_nll(logits, y, logits[0].argmax(-1) != y) == check  # the round's check, seed 0


def test_out_of_fold_nll_by_hand_leave_one_out() -> None:
    # n = K = 5: every fold is one sample, so the check is leave-one-out whatever the deal. A stub
    # fit returns T = 1 + (positives among the labels it is fitted on) / 2, so each sample i is
    # scored at T_i = 1 + (2 - y_i) / 2: 2.0 for y = 0, 1.5 for y = 1.
    from activelabel.campaign.calibrate import cross_validated_nll

    g = np.array([2.0, 2.0, 2.0, -1.0, 1.0])
    y = np.array([0, 0, 1, 1, 0])
    logits = np.stack([g, np.zeros(5)], axis=-1)[None]  # [1, 5, 2]
    wrong = logits[0].argmax(-1) != y  # only sample 2

    def stub(z: np.ndarray, labels: np.ndarray) -> float:
        assert z.shape == (1, 4, 2)
        return 1.0 + labels.sum() / 2

    check = cross_validated_nll(logits, y, wrong, seed=3, fit=stub)
    # -log P(y_i) for a two-class softmax of [g / T, 0]: log(1 + exp(-g / T)) if y = 0 else log(1 + exp(g / T)).
    by_hand = [math.log1p(math.exp(-2.0 / 2.0)), math.log1p(math.exp(-2.0 / 2.0)), math.log1p(math.exp(2.0 / 1.5)),
               math.log1p(math.exp(-1.0 / 1.5)), math.log1p(math.exp(-1.0 / 2.0))]
    assert by_hand == pytest.approx([0.31326, 0.31326, 1.56730, 0.41437, 0.47408], abs=1e-5)
    assert check["out_of_fold_nll"] == pytest.approx(sum(by_hand) / 5, abs=1e-12)  # 0.616453
    at_one = [math.log1p(math.exp(-2.0)), math.log1p(math.exp(-2.0)), math.log1p(math.exp(2.0)),
              math.log1p(math.exp(-1.0)), math.log1p(math.exp(-1.0))]
    assert check["nll_at_1"] == pytest.approx(sum(at_one) / 5, abs=1e-12)  # 0.601461
    assert sorted(check["fold_temperatures"]) == [1.5, 1.5, 2.0, 2.0, 2.0]
    assert sorted(check["fold_errors"]) == [0, 0, 0, 0, 1] and check["folds"] == 5
    with pytest.raises(InvalidArrayError, match="5-fold check needs at least 5 held-out labels; got 4"):
        cross_validated_nll(logits[:, :4], y[:4], wrong[:4], fit=stub)


def test_folds_spread_the_errors_and_are_fixed_by_the_seed() -> None:
    from activelabel.campaign.calibrate import error_stratified_folds

    wrong = np.zeros(150, dtype=bool)
    wrong[[3, 4, 5, 6, 7, 8, 9, 140]] = True  # 8 errors, bunched
    fold = error_stratified_folds(wrong, seed=11)
    assert sorted(np.bincount(fold[wrong], minlength=5)) == [1, 1, 2, 2, 2]  # errors differ by <= 1 per fold
    assert np.bincount(fold, minlength=5).tolist() == [30] * 5
    np.testing.assert_array_equal(fold, error_stratified_folds(wrong, seed=11))
    assert (fold != error_stratified_folds(wrong, seed=12)).any()


def test_round_calibration_is_deterministic_under_the_seed() -> None:
    from activelabel.campaign.calibrate import cross_validated_nll

    deterministic, passes, y = _under_confident_mixture()
    from activelabel.pipeline.calibration import fit_mixture_temperature

    wrong = predictive_probabilities(passes).argmax(-1) != y
    first = cross_validated_nll(passes, y, wrong, seed=5, fit=fit_mixture_temperature)
    assert cross_validated_nll(passes, y, wrong, seed=5, fit=fit_mixture_temperature) == first
    other = cross_validated_nll(passes, y, wrong, seed=6, fit=fit_mixture_temperature)
    assert other["fold_temperatures"] != first["fold_temperatures"]
    assert other["nll_at_1"] == first["nll_at_1"]  # T = 1 does not depend on the deal


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
    # The round's check accepts it: fitted on four folds, each fold's T predicts the fifth better.
    from activelabel.campaign.calibrate import cross_validated_nll

    check = cross_validated_nll(passes, y, mean.argmax(-1) != y, fit=fit_mixture_temperature)
    assert all(abs(t - t_mc) < 0.05 for t in check["fold_temperatures"])
    assert check["nll_at_1"] == pytest.approx(at_one) and check["out_of_fold_nll"] < at_one - 0.01
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

    from activelabel.pipeline.calibration import calibrated_probabilities, fit_mixture_sharpness

    # The kept calibrator is the candidate with the lowest out-of-fold NLL; here the mixture
    # temperature alone (T1 = 1: acquisition's passes stay as they are).
    mixture = result["mixture_check"]
    assert mixture["out_of_fold_nll"]["temperature"] == result["check"]["out_of_fold_nll"]
    assert mixture["out_of_fold_nll"]["none"] == result["check"]["nll_at_1"]
    assert mixture["chosen"] == min(mixture["out_of_fold_nll"], key=mixture["out_of_fold_nll"].get) == "mixture_temperature"
    assert "skipped" not in result and result["temperature"] == 1.0
    assert result["mixture_temperature"] == pytest.approx(fit_mixture_sharpness(val, y[:200], 1.0))
    assert result["mixture_temperature"] < 1  # the mean of 16 dropout passes is under-confident: sharpen it
    for when, (t1, t2) in (("before", (1.0, 1.0)), ("after", (1.0, result["mixture_temperature"]))):
        expected = calibration_report(calibrated_probabilities(yard, t1, t2), y[200:]).to_dict()
        assert result[when]["nll"] == pytest.approx(expected["nll"]) and result[when]["ece"] == pytest.approx(
            expected["ece"])
    assert result["after"]["nll"] < result["before"]["nll"]
    deterministic = fit_round_calibration(model, x[:200], y[:200], None, None, torch.device("cpu"))
    assert deterministic["predictor"] == {"method": "deterministic", "passes": 1, "members": 1}
    assert describe_predictor(deterministic["predictor"]) == describe_predictor(None) == "one deterministic pass"


# --- The mixture temperature T2: softmax(log(mean_s softmax(z_s / T1)) / T2) ----------------------------


def _dispersed_mixture(spread: float, wrong_rate: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-pass logits ``[20, 800, 4]`` and labels: each sample's passes share a margin-3 vote for a
    class that is right ``1 - wrong_rate`` of the time, plus per-pass Gaussian noise of std
    ``spread``. Much noise and few errors: the mean is under-confident (over-dispersed passes);
    little noise and many errors: over-confident (under-dispersed passes)."""
    rng = np.random.default_rng(seed)
    s, n, c = 20, 800, 4
    y = rng.integers(0, c, n)
    voted = np.where(rng.random(n) < 1 - wrong_rate, y, (y + rng.integers(1, c, n)) % c)
    return 3.0 * np.eye(c)[voted][None] + spread * rng.standard_normal((s, n, c)), y


@pytest.mark.parametrize("spread, wrong_rate, sharpens", [(3.0, 0.05, True), (0.3, 0.25, False)])
def test_mixture_temperature_lowers_the_nll_of_a_dispersed_mixture_and_keeps_every_argmax(
        spread: float, wrong_rate: float, sharpens: bool) -> None:
    from activelabel.pipeline.calibration import (
        calibrated_probabilities,
        fit_mixture_sharpness,
        fit_mixture_temperature,
        mixture_log_probabilities,
    )
    from activelabel.pipeline.metrics import negative_log_likelihood as nll

    z, y = _dispersed_mixture(spread, wrong_rate)
    mean = predictive_probabilities(z)
    confidence, right = mean.max(-1).mean(), (mean.argmax(-1) == y).mean()
    assert (confidence < right - 0.1) if sharpens else (confidence > right + 0.1)  # as built
    np.testing.assert_allclose(np.exp(mixture_log_probabilities(z)), mean, rtol=1e-12)
    # T2 alone; then on top of the per-pass T1, which leaves an over-dispersed mean under-confident
    # (T2 still sharpens), while nearly identical passes are one softmax that T1 already fixed (T2 ~ 1).
    for t1 in (1.0, fit_mixture_temperature(z, y)):
        t2 = fit_mixture_sharpness(z, y, t1)
        at_t1, calibrated = predictive_probabilities(z, t1), calibrated_probabilities(z, t1, t2)
        if t1 == 1.0 or sharpens:
            assert (t2 < 0.9) if sharpens else (t2 > 1.2)
            assert nll(calibrated, y) < nll(at_t1, y) - 0.005
        else:
            assert abs(math.log(t2)) < 0.05 and nll(calibrated, y) <= nll(at_t1, y) + 1e-12
        np.testing.assert_array_equal(calibrated.argmax(-1), at_t1.argmax(-1))  # accuracy unchanged
        np.testing.assert_allclose(calibrated.sum(-1), 1.0, rtol=1e-12)
        # The fit found the optimum: no T2 on a fine grid does better.
        grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 300))
        assert nll(calibrated, y) <= min(nll(calibrated_probabilities(z, t1, g), y) for g in grid) + 1e-6
    # By hand for one sample, two passes: log mean = log([0.5, 0.5] . softmax rows), then power 1 / T2.
    two = np.array([[[2.0, 0.0]], [[0.0, 0.0]]])
    mean_by_hand = (np.array([math.exp(2), 1]) / (math.exp(2) + 1) + 0.5) / 2
    powered = mean_by_hand ** 2 / (mean_by_hand ** 2).sum()
    np.testing.assert_allclose(calibrated_probabilities(two, 1.0, 0.5)[0], powered, rtol=1e-12)


def test_mixture_temperature_1_reproduces_the_per_pass_calibration_bit_for_bit() -> None:
    from activelabel.pipeline.calibration import calibrated_probabilities

    z, y = _dispersed_mixture(3.0, 0.05)
    for t1 in (1.0, 0.44, 2.5):
        np.testing.assert_array_equal(calibrated_probabilities(z, t1, 1.0), predictive_probabilities(z, t1))
        np.testing.assert_array_equal(calibrated_probabilities(z, t1), predictive_probabilities(z, t1))
    # One deterministic pass: no mixture stage, the round's record as before plus T2 = 1.
    rng = np.random.default_rng(0)
    m = rng.normal(size=200)
    y = (rng.random(200) < 1 / (1 + np.exp(-m))).astype(np.int64)
    x = np.stack([np.zeros(200), m], axis=1)[:, None, None, :].astype(np.float32)
    result = _round_calibration(x, y)
    assert result["mixture_temperature"] == 1.0 and "mixture_check" not in result
    assert result["temperature"] == pytest.approx(fit_temperature(4.0 * x[:, 0, 0].astype(np.float64), y))


def _identical_members() -> list[torch.nn.Module]:
    """Two identical 4 x identity models: an 'ensemble' whose mixture is one softmax, so T2 can do
    nothing T1 cannot (the round still runs its mixture stage: S = 2)."""
    members = []
    for _ in range(2):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 2, bias=False))
        with torch.no_grad():
            model[1].weight.copy_(torch.tensor([[4.0, 0.0], [0.0, 4.0]]))
        members.append(model)
    return members


def test_round_refuses_the_mixture_temperature_when_it_does_not_predict_left_out_folds_better() -> None:
    # The split of test_round_keeps_t_1_when_temperatures_fitted_on_other_folds_predict_a_fold_worse,
    # scored by two identical members: out of fold, neither T1 nor T2 (alone or on top) beats T = 1.
    from activelabel.campaign.calibrate import fit_round_calibration

    x, y = _one_ruinous_error_among_near_ties()
    yard = 4.0 * np.stack([x[:, 0, 0], x[:, 0, 0]]).astype(np.float64)
    result = fit_round_calibration(_identical_members(), x, y, yard, y, torch.device("cpu"), method="ensemble")
    mixture = result["mixture_check"]
    nll = mixture["out_of_fold_nll"]
    assert mixture["chosen"] == "none" and result["temperature"] == result["mixture_temperature"] == 1.0
    assert nll["none"] == pytest.approx(0.3462, abs=1e-4) and nll["temperature"] == pytest.approx(0.6224, abs=1e-4)
    # One softmax: T2 alone is T1 alone under another name (same folds, same optimum).
    assert nll["mixture_temperature"] == pytest.approx(nll["temperature"], abs=1e-6)
    assert nll["both"] > nll["none"]
    assert len(mixture["fold_temperatures"]["both"]) == 5 and all(len(p) == 2 for p in mixture["fold_temperatures"]["both"])
    assert result["skipped"].endswith(
        f"the split cannot tell a temperature, nor a mixture temperature (out-of-fold NLL "
        f"{nll['mixture_temperature']:.4f} alone, {nll['both']:.4f} on top of the per-pass one); T = 1 kept")
    assert result["after"] == result["before"]  # nothing kept, nothing changed


def test_round_keeps_the_mixture_temperature_only_when_it_beats_the_per_pass_one_out_of_fold() -> None:
    from activelabel.campaign.calibrate import choose_mixture_calibration, cross_validated_nll
    from activelabel.pipeline.calibration import fit_mixture_temperature

    # Over-dispersed passes: T2 alone predicts left-out folds better than T1 alone and is kept.
    z, y = _dispersed_mixture(3.0, 0.05)
    wrong = predictive_probabilities(z).argmax(-1) != y
    check = cross_validated_nll(z, y, wrong, seed=1, fit=fit_mixture_temperature)
    chosen = choose_mixture_calibration(z, y, wrong, check, seed=1)
    nll = chosen["out_of_fold_nll"]
    assert nll["none"] == check["nll_at_1"] and nll["temperature"] == check["out_of_fold_nll"]
    assert chosen["chosen"] == min(nll, key=nll.get) != "temperature"
    assert min(nll["mixture_temperature"], nll["both"]) < nll["temperature"] < nll["none"]
    assert chosen == choose_mixture_calibration(z, y, wrong, check, seed=1)  # deterministic in the seed


def test_acquisition_reads_the_per_pass_temperature_only() -> None:
    # T2 acts on the stored predictive mean; acquisition divides each pass's logits by T1 alone,
    # so BALD's per-pass distributions and total = aleatoric + epistemic are those at T1.
    from types import SimpleNamespace

    from activelabel.campaign.steps import _acquisition_temperature

    config = SimpleNamespace(calibrate=True)
    stored = {"temperature": 0.44, "mixture_temperature": 0.67}
    assert _acquisition_temperature(SimpleNamespace(calibration=stored), config) == 0.44
    assert _acquisition_temperature(SimpleNamespace(calibration={**stored, "temperature": 1.0}), config) == 1.0
    assert _acquisition_temperature(SimpleNamespace(calibration=stored), SimpleNamespace(calibrate=False)) == 1.0
