"""A simulated segmentation campaign with calibrate on: each round holds out labeled images,
fits a per-pixel temperature on them (campaign.segmentation_calibration), stores it with the
pixel NLL/ECE before and after, and scores the pool and draws heatmaps at that temperature.

Two active rounds on the generated shapes dataset, 24 seed masks (from 20 labeled images on a
round holds some out) and 8 more per round; one deterministic pass (the predictor whose pixels
are over-confident here: the mean of 4 MC-dropout passes was already calibrated on this set,
pixel ECE 2.0 % and 4.1 %, and the guard kept T = 1 in both rounds), trained exactly 400 steps.
Why 400 and not the cheapest 200: after 200 steps whether the guard keeps a temperature hung on
the CPU's arithmetic (on one machine round 1 kept T = 1.23, out-of-fold pixel NLL 0.177 -> 0.168;
on an AMD EPYC neither round did, 0.151 -> 0.157). After 400 steps the U-Net is over-confident by
a wide margin on both (measured on the EPYC: T = 2.42 and 2.63, out-of-fold NLL 0.196 -> 0.122
and 0.306 -> 0.187), so the kept-temperature path the tests below read is there on any machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select

from activelabel.acquisition.pixelwise import pixel_maps
from activelabel.campaign import prepare_campaign
from activelabel.campaign.calibrate import choose_mixture_calibration, cross_validated_nll
from activelabel.campaign.calibration_terms import FOLDS
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import campaign_data, clear_cache
from activelabel.campaign.segmentation_calibration import (
    MIN_IMAGES,
    YARDSTICK_PIXELS_PER_IMAGE,
    segmentation_pixel_logits,
    validation_images,
)
from activelabel.campaign.segmentation_round import load_segmenter
from activelabel.campaign.uncertainty_report import round_uncertainty
from activelabel.pipeline.calibration import (
    calibrated_probabilities,
    calibration_report,
    fit_mixture_sharpness,
    fit_mixture_temperature,
    predictive_probabilities,
)
from activelabel.pipeline.pixel_calibration import image_folds
from activelabel.pipeline.masks import IGNORE_INDEX
from activelabel.pipeline.segmentation import predict_segmentation_stream
from activelabel.storage import ModelCheckpoint, Round, Sample, SampleSplit, Score, open_engine, session_scope
from tests_support_rounds import run_round

SEEDS, BATCH = 24, 8
CPU = torch.device("cpu")


def seg_config(tmp_path: Path, **changes) -> CampaignConfig:
    settings = dict(
        name="shapes-seg-cal", task="segmentation", dataset="shapes?n=120&size=32", strategy="entropy",
        uncertainty="deterministic", initial_labeled=SEEDS, min_labels_to_train=SEEDS, batch_size=BATCH, epochs=1,
        test_fraction=0.25, rounds=2, device="cpu", heatmap_dir=str(tmp_path / "heatmaps"), calibrate=True,
    )
    return CampaignConfig(**(settings | changes))


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """(engine, campaign id, config, database URL) after two rounds (shared: training costs seconds)."""
    tmp_path = tmp_path_factory.mktemp("segcal")
    clear_cache()
    config = seg_config(tmp_path, epochs=400, fixed_epochs=True)  # over-confident on any CPU (module doc)
    url = f"sqlite:///{tmp_path}/al.db"
    engine = open_engine(url)
    campaign_id = prepare_campaign(engine, config)
    run_round(engine, campaign_id)
    run_round(engine, campaign_id)
    return engine, campaign_id, config, url


def _round(session, index: int) -> Round:
    return session.scalars(select(Round).where(Round.index == index)).one()


def _checkpoint(session, rnd: Round) -> ModelCheckpoint:
    checkpoint = session.scalars(select(ModelCheckpoint).where(ModelCheckpoint.round_id == rnd.id)).one()
    session.expunge(checkpoint)
    return checkpoint


def test_each_round_holds_out_images_and_stores_a_temperature_with_pixel_ece_before_and_after(campaign) -> None:
    engine, _, config, _ = campaign
    data = campaign_data(config)
    with session_scope(engine) as session:
        test_uris = session.scalars(select(Sample.uri).where(Sample.split == SampleSplit.test)
                                    .order_by(Sample.id)).all()
        for index, labeled in ((1, SEEDS), (2, SEEDS + BATCH)):
            rnd = _round(session, index)
            held = len(validation_images(labeled, rnd.index + config.seed * 1_000_003))
            assert held == FOLDS  # max(5, round(0.15 x 24 or 32))
            assert rnd.training["held_out"] == held and rnd.training["trained_on"] == labeled - held
            cal = rnd.calibration
            assert cal["validation_size"] == held and cal["validation_pixels"] == held * 32 * 32
            assert cal["predictor"] == {"method": "deterministic", "passes": 1, "members": 1}
            assert cal["mixture_temperature"] == 1.0
            assert set(cal["check"]) >= {"out_of_fold_nll", "nll_at_1", "fold_temperatures"}
            kept = cal["check"]["out_of_fold_nll"] < cal["check"]["nll_at_1"]
            assert ("skipped" not in cal) == kept and (cal["temperature"] != 1.0) == kept
            # before / after by value: the stored pixel figures are those of the stored model's
            # deterministic pass over the test pixels at T = 1 and at the kept T.
            model = load_segmenter(_checkpoint(session, rnd), CPU)
            images = data.store.read(test_uris)
            masks = np.stack([data.given_masks[u] for u in test_uris])
            seed = config.seed * 1_000_003 + rnd.index  # the round's seed (steps._seed)
            z, y, _ = segmentation_pixel_logits(model, images, masks, CPU, samples=0, seed=seed,
                                                ignore_index=IGNORE_INDEX, per_image=YARDSTICK_PIXELS_PER_IMAGE)
            assert len(y) == len(test_uris) * 32 * 32 == sum(b["count"] for b in cal["before"]["bins"])
            for when, t in (("before", 1.0), ("after", cal["temperature"])):
                expected = calibration_report(predictive_probabilities(z, t), y).to_dict()
                assert cal[when]["ece"] == pytest.approx(expected["ece"], rel=1e-9)
                assert cal[when]["nll"] == pytest.approx(expected["nll"], rel=1e-9)
            # round.test_ece stays the uncalibrated deterministic pixel ECE, as classification's does
            assert rnd.test_ece == rnd.segmentation_metrics["pixel_ece"]
    # The shapes U-Net after 200 steps is mis-calibrated enough that at least one round keeps T.
    with session_scope(engine) as session:
        kept = [r.calibration for r in session.scalars(select(Round)) if r.calibration["temperature"] != 1.0]
        assert kept, "no round kept a temperature"
        for cal in kept:  # over-confident pixels: T > 1, and the test pixels agree with the guard
            assert cal["temperature"] > 1.0
            assert cal["after"]["ece"] < cal["before"]["ece"] and cal["after"]["nll"] < cal["before"]["nll"]
            assert cal["after"]["accuracy"] == cal["before"]["accuracy"]  # one pass: T moves no argmax


def test_scores_and_heatmaps_use_the_kept_temperature(campaign) -> None:
    engine, campaign_id, config, _ = campaign
    data = campaign_data(config)
    with session_scope(engine) as session:
        rnd = next(r for r in session.scalars(select(Round).order_by(Round.index.desc()))
                   if r.calibration["temperature"] != 1.0)
        t = rnd.calibration["temperature"]
        assert rnd.uncertainty["temperature"] == t
        scores = session.scalars(select(Score).where(Score.round_id == rnd.id).order_by(Score.sample_id)).all()[:6]
        uris = dict(session.execute(select(Sample.id, Sample.uri)).all())
        model = load_segmenter(_checkpoint(session, rnd), CPU)
        seed = config.seed * 1_000_003 + rnd.index
    images = data.store.read([uris[s.sample_id] for s in scores])
    at = {temp: pixel_maps(next(predict_segmentation_stream(model, [images], samples=0, device=CPU,
                                                            seed=seed, temperature=temp)))
          for temp in (1.0, t)}
    stored = np.array([s.total for s in scores])
    # the stored per-image mean entropy is the one at the kept T, not at T = 1
    assert stored == pytest.approx(at[t].entropy.mean(axis=(1, 2)), rel=1e-5)
    assert np.abs(stored - at[1.0].entropy.mean(axis=(1, 2))).max() > 1e-3
    assert (stored > at[1.0].entropy.mean(axis=(1, 2))).all() == (t > 1)
    # status --round N reads the same calibration back
    report = round_uncertainty(engine, config.name, rnd.index)
    assert report.calibration["temperature"] == t and report.calibration_absence is None


def test_calibrate_off_or_too_few_images_fits_nothing() -> None:
    assert len(validation_images(MIN_IMAGES - 1, 0)) == 0
    assert len(validation_images(MIN_IMAGES, 0)) == FOLDS
    assert len(validation_images(100, 0)) == 15
    assert np.array_equal(validation_images(100, 3), validation_images(100, 3))


def _cli(*args: str, cwd: Path) -> str:
    result = subprocess.run([sys.executable, "-m", "activelabel.cli", *args], cwd=cwd, capture_output=True,
                            text=True, timeout=300, env=os.environ | {"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr[-3000:]
    return " ".join(result.stdout.split())


def test_status_and_the_report_show_the_per_pixel_calibration(campaign, tmp_path) -> None:
    engine, _, config, url = campaign
    with session_scope(engine) as session:
        cal = {r.index: r.calibration for r in session.scalars(select(Round))}
    said = _cli("status", config.name, "--round", "1", "--database-url", url, cwd=tmp_path)
    held_out = "5 held-out images, 5,120 labeled pixels"
    title = ("no temperature kept (T = 1; " + held_out + ")" if cal[1].get("skipped")
             else f"temperature {cal[1]['temperature']:.3f} (fitted on {held_out})")
    assert f"Calibration of the one deterministic pass · {title}" in said
    for when in ("before", "after"):  # the table's rows: accuracy, NLL, Brier, ECE of the test pixels
        m = cal[1][when]
        assert f"{when} │ " + " │ ".join(f"{m[k]:.4f}" for k in ("accuracy", "nll", "brier", "ece")) in said
    out = tmp_path / "report.html"
    _cli("report", config.name, "--out", str(out), "--database-url", url, cwd=tmp_path)
    page = out.read_text()
    assert 'id="calibration"' in page and "reliability-round-" in page
    assert "the guard&#x27;s folds split by image" in page or "the guard's folds split by image" in page
    assert "No temperature scaling in any round" not in page


def test_many_images_share_a_pixel_budget(campaign, monkeypatch) -> None:
    """More images than the budget allows at full size: each gives a seeded share (never fewer
    than MIN_PIXELS_PER_IMAGE), so memory does not grow with the held-out set."""
    from activelabel.campaign import segmentation_calibration as sc

    engine, _, config, _ = campaign
    data = campaign_data(config)
    with session_scope(engine) as session:
        uris = session.scalars(select(Sample.uri).where(Sample.split == SampleSplit.test).order_by(Sample.id)).all()
        model = load_segmenter(_checkpoint(session, _round(session, 1)), CPU)
    images, masks = data.store.read(uris), np.stack([data.given_masks[u] for u in uris])
    monkeypatch.setattr(sc, "PIXEL_BUDGET", 100 * len(uris))
    z, y, image = sc.segmentation_pixel_logits(model, images, masks, CPU, samples=0, seed=1, ignore_index=IGNORE_INDEX)
    assert z.shape == (1, 100 * len(uris), 5) and np.bincount(image).tolist() == [100] * len(uris)
    monkeypatch.setattr(sc, "PIXEL_BUDGET", 10)
    _, y, _ = sc.segmentation_pixel_logits(model, images, masks, CPU, samples=0, seed=1, ignore_index=IGNORE_INDEX)
    assert len(y) == sc.MIN_PIXELS_PER_IMAGE * len(uris)


def test_a_sampled_predictor_chooses_its_mixture_temperature_on_the_folds_by_image(tmp_path) -> None:
    """MC dropout (4 passes): the round also weighs T2 (none, T1, T2, both) on the guard's folds by
    image, stores the choice, keeps T2 = 1 unless chosen, and its after-figures are those of
    ``calibrated_probabilities(passes, T1, T2)`` on the test pixels."""
    clear_cache()
    config = seg_config(tmp_path, name="shapes-seg-t2", uncertainty="mc_dropout", mc_samples=4, rounds=1)
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, config)
    run_round(engine, campaign_id)
    data = campaign_data(config)
    with session_scope(engine) as session:
        rnd = _round(session, 1)
        cal = rnd.calibration
        model = load_segmenter(_checkpoint(session, rnd), CPU)
        test_uris = session.scalars(select(Sample.uri).where(Sample.split == SampleSplit.test)
                                    .order_by(Sample.id)).all()
    assert cal["predictor"] == {"method": "mc_dropout", "passes": 4, "members": 1}
    mixture = cal["mixture_check"]
    assert set(mixture["out_of_fold_nll"]) == {"none", "temperature", "mixture_temperature", "both"}
    assert len(mixture["fold_temperatures"]["mixture_temperature"]) == FOLDS
    assert mixture["out_of_fold_nll"]["none"] == cal["check"]["nll_at_1"]
    assert mixture["out_of_fold_nll"]["temperature"] == cal["check"]["out_of_fold_nll"]
    chosen = mixture["chosen"]
    assert mixture["out_of_fold_nll"][chosen] == min(mixture["out_of_fold_nll"].values())
    assert (cal["temperature"] != 1.0) == (chosen in ("temperature", "both"))
    assert (cal["mixture_temperature"] != 1.0) == (chosen in ("mixture_temperature", "both"))
    assert ("skipped" in cal) == (chosen == "none")
    seed = config.seed * 1_000_003 + 1
    images = data.store.read(test_uris)
    masks = np.stack([data.given_masks[u] for u in test_uris])
    z, y, _ = segmentation_pixel_logits(model, images, masks, CPU, samples=4, seed=seed,
                                        ignore_index=IGNORE_INDEX, per_image=YARDSTICK_PIXELS_PER_IMAGE)
    for when, (t1, t2) in (("before", (1.0, 1.0)), ("after", (cal["temperature"], cal["mixture_temperature"]))):
        expected = calibration_report(calibrated_probabilities(z, t1, t2), y).to_dict()
        assert cal[when]["ece"] == pytest.approx(expected["ece"], rel=1e-9)
        assert cal[when]["nll"] == pytest.approx(expected["nll"], rel=1e-9)


def test_the_mixture_choice_fits_each_fold_without_the_images_of_that_fold() -> None:
    """Hand-made pixels of 10 images, 4 passes that each vote confidently and disagree: the
    averaged distribution is under-confident, so a T2 < 1 wins; each fold's T2 is the one fitted
    on the other folds' images only."""
    rng = np.random.default_rng(0)
    n, c = 400, 3
    labels = rng.integers(0, c, n)
    votes = np.where(rng.random((4, n)) < 0.7, labels, rng.integers(0, c, (4, n)))
    z = np.eye(c)[votes] * 6.0 + rng.normal(0, 0.1, (4, n, c))
    image = np.arange(n) % 10
    wrong = predictive_probabilities(z).argmax(-1) != labels
    folds = image_folds(image, wrong, 0, FOLDS)
    check = cross_validated_nll(z, labels, wrong, seed=0, fit=fit_mixture_temperature, fold=folds)
    mixture = choose_mixture_calibration(z, labels, wrong, check, seed=0, fold=folds)
    assert mixture["chosen"] in ("mixture_temperature", "both")
    for k, t2 in enumerate(mixture["fold_temperatures"]["mixture_temperature"]):
        rest = folds != k
        assert len(np.unique(image[folds == k])) == 2 and not set(image[folds == k]) & set(image[rest])
        assert t2 == pytest.approx(fit_mixture_sharpness(z[:, rest], labels[rest], 1.0), rel=1e-9)
        assert t2 < 1.0
