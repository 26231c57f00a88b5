"""Uncertainty in the round (issue 12): shared-mask MC scoring, the decomposition stored per
sample, batch-aware strategies wired into score/select, calibration per round. Real image
files, real SQLite, the round's own steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sqlalchemy import select

from activelabel.acquisition import bald, get_strategy
from activelabel.campaign import prepare_campaign, steps
from activelabel.campaign.candidates import Candidates, distinct
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import campaign_data, clear_cache
from activelabel.campaign.file import load_campaign_file
from activelabel.pipeline.calibration import predictive_probabilities
from activelabel.pipeline.checkpoint import load_model
from activelabel.pipeline.model import ModelSpec
from activelabel.pipeline.prediction import predict_probabilities
from activelabel.storage import ModelCheckpoint, Round, Sample, Score, Selection, open_engine, session_scope
from tests_support_campaignfile import write_campaign_file
from tests_support_owndata import LABELS, write_manifest, write_unlabeled_pool
from tests_support_rounds import run_rounds

COPIES = 3
SETTINGS = {"campaign.batch_size": 10, "campaign.epochs": 3, "campaign.mc_samples": 10, "data.evaluation_size": 0}


@pytest.fixture(autouse=True)
def _fresh_data_cache():
    clear_cache()
    yield
    clear_cache()


def make_pool_with_near_copies(root: Path, originals: int = 50) -> None:
    """Each image saved ``COPIES`` times, the copies one gray level apart in one pixel: distinct
    files (not byte-identical, so not merged as duplicates) that any model sees as the same."""
    images = root / "images"
    truth = write_unlabeled_pool(images, count=originals, jpeg_every=10_000)
    for rel, label in list(truth.items()):
        pixels = np.array(Image.open(images / rel).convert("L"), dtype=np.int16)
        for c in range(1, COPIES):
            copy = pixels.copy()
            copy[0, 0] = (copy[0, 0] + c) % 256
            name = rel.replace(".png", f"-copy{c}.png")
            Image.fromarray(copy.astype(np.uint8), mode="L").save(images / name)
            truth[name] = label
    write_manifest(root / "truth.csv", truth, base=images)


def campaign_file(root: Path, name: str, strategy: str, **replace: str) -> Path:
    return write_campaign_file(root / f"{name}.toml", name, simulated=True,
                               settings={**SETTINGS, "campaign.strategy": strategy}, replace=replace)


def original_of(uri: str) -> str:
    return uri.split("-copy")[0].removesuffix(".png")


def active_round(tmp_path: Path, strategy: str, **replace: str):
    config, _ = load_campaign_file(campaign_file(tmp_path, strategy, strategy, **replace))
    engine = open_engine(f"sqlite:///{tmp_path}/{strategy}.db")
    campaign_id = prepare_campaign(engine, config)
    run_rounds(engine, campaign_id, 2)  # a random cold-start batch, then one active round
    with session_scope(engine) as session:
        rnd = session.scalar(select(Round).where(Round.index == 2))
        picked = session.execute(
            select(Sample.id, Sample.uri).join(Selection, Selection.sample_id == Sample.id)
            .where(Selection.round_id == rnd.id).order_by(Selection.rank)).all()
        scores = session.scalars(select(Score).where(Score.round_id == rnd.id).order_by(Score.sample_id)).all()
        session.expunge_all()
    return config, engine, rnd, picked, scores


def test_batchbald_round_picks_no_two_copies_where_bald_does(tmp_path) -> None:
    make_pool_with_near_copies(tmp_path)
    # Top-k BALD without refinement, so every stored score is the first stage's, as batchbald's are.
    refine = "# refine_passes = ..."
    _, _, bald_round, bald_picks, bald_scores = active_round(tmp_path, "bald", **{refine: "refine_passes = 0"})
    config, engine, rnd, picks, scores = active_round(tmp_path, "batchbald")
    assert rnd.kind.value == "active" and len(picks) == len(bald_picks) == 10

    bald_originals = [original_of(uri) for _, uri in bald_picks]
    assert len(set(bald_originals)) < len(bald_originals)  # top-k BALD spends labels on copies
    originals = [original_of(uri) for _, uri in picks]
    assert len(set(originals)) == len(originals)  # BatchBALD never does

    # Both rounds scored the same pool with the same model: same per-sample BALD.
    assert [s.sample_id for s in scores] == [s.sample_id for s in bald_scores]
    np.testing.assert_allclose([s.value for s in scores], [s.value for s in bald_scores], rtol=1e-9)
    assert rnd.uncertainty == {"method": "mc_dropout", "samples": 10, "members": 1, "mode": "full_network",
                               "temperature": rnd.uncertainty["temperature"], "candidates": len(scores),
                               "density": rnd.uncertainty["density"]}
    assert rnd.uncertainty["density"]["labeled"] == rnd.labeled_count  # fitted on the labels the model learned
    assert bald_round.batch_plan is None and rnd.batch_plan["sample_ids"] == [sid for sid, _ in picks]

    # The selection is exactly select_batch on the pool's probabilities, recomputed here.
    with session_scope(engine) as session:
        checkpoint = session.scalar(select(ModelCheckpoint).where(ModelCheckpoint.round_id == rnd.id))
        uris = dict(session.execute(select(Sample.id, Sample.uri)).all())
        model = load_model(ModelSpec.from_dict(checkpoint.architecture), checkpoint.state, torch.device("cpu"))
    ids = [s.sample_id for s in scores]
    images = campaign_data(config).store.read([uris[i] for i in ids])
    seed = steps._seed(config, rnd)
    probs = predict_probabilities(model, images, samples=10, device=torch.device("cpu"), seed=seed,
                                  temperature=rnd.uncertainty["temperature"])
    keep = distinct(probs, bald(probs))
    images_left = {original_of(uris[i]) for i in ids}
    assert len(keep) == len(images_left) == rnd.batch_plan["distinct"]  # one of each image
    assert {original_of(uris[ids[i]]) for i in keep} == images_left
    batch = get_strategy("batchbald").select_batch(probs[:, keep], 10, rng=np.random.default_rng(seed))
    assert [ids[keep[i]] for i in batch.indices] == [sid for sid, _ in picks]
    np.testing.assert_allclose(rnd.batch_plan["scores"], batch.scores, rtol=1e-6)


def test_scores_carry_the_uncertainty_split(tmp_path) -> None:
    make_pool_with_near_copies(tmp_path, originals=30)
    _, _, rnd, _, scores = active_round(tmp_path, "entropy")
    total = np.array([s.total for s in scores])
    aleatoric = np.array([s.aleatoric for s in scores])
    epistemic = np.array([s.epistemic for s in scores])
    np.testing.assert_allclose(total, aleatoric + epistemic, rtol=0, atol=1e-9)
    assert (epistemic >= 0).all() and epistemic.max() > 0
    assert (total <= np.log(10) + 1e-9).all()
    np.testing.assert_allclose([s.value for s in scores], total, rtol=1e-5)  # entropy is the total
    assert rnd.mean_pool_entropy == pytest.approx(total.mean(), rel=1e-6)


def test_candidate_set_does_not_depend_on_chunking_or_order() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=(5, 300)).astype(np.float32)
    scores = np.round(bald(probs), 2)  # rounded: many ties, broken by position
    expected = np.sort(np.lexsort((np.arange(300), -scores))[:50])
    for chunk in (1, 7, 300):
        order = rng.permutation(300)
        candidates = Candidates(50)
        for start in range(0, 300, chunk):
            part = order[start:start + chunk]
            candidates.offer(part, scores[part], probs[:, part])
        np.testing.assert_array_equal(candidates.positions, expected)
        np.testing.assert_array_equal(candidates.probs, probs[:, expected])


def test_distinct_keeps_the_most_informative_of_each_group_of_near_copies() -> None:
    rng = np.random.default_rng(1)
    base = rng.dirichlet(np.ones(3), size=(4, 5))  # [S, 5, C]
    near = base[:, [0, 0, 2]] + np.array([0.0, 4e-4, -4e-4])[None, :, None] * [1, -1, 0]
    probs = np.concatenate([base, near], axis=1)  # samples 5, 6 copy sample 0; 7 copies 2
    scores = np.array([0.1, 0.5, 0.2, 0.3, 0.4, 0.9, 0.1, 0.25])
    np.testing.assert_array_equal(distinct(probs, scores), [1, 3, 4, 5, 7])


def _seeded_campaign(tmp_path: Path, name: str, strategy: str = "bald", **replace: str):
    """A pool with a labeled test split and 30 seed labels: round 1 is already active."""
    truth = write_unlabeled_pool(tmp_path / "images", count=110)
    write_manifest(tmp_path / "truth.csv", truth, base=tmp_path / "images")
    names = sorted(truth)
    write_manifest(tmp_path / "test.csv", {n: truth[n] for n in names[:30]}, base=tmp_path / "images")
    write_manifest(tmp_path / "seeds.csv", {n: truth[n] for n in names[30:60]}, base=tmp_path / "images")
    config, _ = load_campaign_file(campaign_file(
        tmp_path, name, strategy, **{"# test = ...": 'test = "test.csv"', "# labeled = ...": 'labeled = "seeds.csv"',
                                   "epochs = 3": "epochs = 10", **replace}))
    engine = open_engine(f"sqlite:///{tmp_path}/{name}.db")
    campaign_id = prepare_campaign(engine, config)
    run_rounds(engine, campaign_id, 1)
    with session_scope(engine) as session:
        rnd = session.scalar(select(Round).where(Round.index == 1))
        session.expunge_all()
    return config, engine, rnd


def test_each_round_fits_a_temperature_on_held_out_labels_and_acquisition_uses_it(tmp_path, monkeypatch) -> None:
    from activelabel.campaign import calibrate

    monkeypatch.setattr(calibrate, "MIN_LABELS", 20)  # the default (500) needs a bigger pool
    # Half held out: a split with errors enough (at least 5, one per fold) that temperatures fitted
    # on four of five folds predict the fifth better than T = 1 (the round's check before it keeps one).
    monkeypatch.setattr(calibrate, "VALIDATION_FRACTION", 0.5)
    config, engine, rnd = _seeded_campaign(tmp_path, "calibrated")
    assert rnd.kind.value == "active" and rnd.labeled_count == 30
    calibration = rnd.calibration
    assert calibration["validation_size"] == 15 and calibration["validation_errors"] >= 3
    # round.training: the models learned from the 15 labels not held out
    assert (rnd.training["trained_on"], rnd.training["held_out"], rnd.training["members"]) == (15, 15, 1)
    assert "skipped" not in calibration
    assert calibration["check"]["out_of_fold_nll"] < calibration["check"]["nll_at_1"]
    assert sum(calibration["check"]["fold_errors"]) == calibration["validation_errors"] >= 5
    # The round keeps the calibrator with the lowest out-of-fold NLL: the per-pass T1 and/or the
    # mixture T2 (campaign.calibrate.choose_mixture_calibration); at least one of them is fitted.
    mixture = calibration["mixture_check"]
    assert mixture["chosen"] == min(mixture["out_of_fold_nll"], key=mixture["out_of_fold_nll"].get) != "none"
    assert mixture["out_of_fold_nll"]["temperature"] == calibration["check"]["out_of_fold_nll"]
    assert 0.01 <= calibration["temperature"] <= 100 and 0.25 <= calibration["mixture_temperature"] <= 100
    assert (calibration["temperature"] != 1.0) == (mixture["chosen"] in ("temperature", "both"))
    assert (calibration["mixture_temperature"] != 1.0) == (mixture["chosen"] in ("mixture_temperature", "both"))
    before, after = calibration["before"], calibration["after"]
    assert sum(b["count"] for b in before["bins"]) == sum(b["count"] for b in after["bins"]) == 30
    assert len(before["bins"]) == 15
    # Acquisition divides each pass's logits by T1 only; T2 acts on the stored predictive mean.
    assert rnd.uncertainty["temperature"] == calibration["temperature"]
    # T is fitted for what acquisition reads: the mean of the round's 10 MC passes (same mask
    # seed as its scoring), and before/after are that predictor's figures on the test split.
    assert calibration["predictor"] == {"method": "mc_dropout", "passes": 10, "members": 1}
    from activelabel.pipeline.calibration import calibration_report
    from activelabel.storage import SampleSplit

    with session_scope(engine) as session:
        checkpoint = session.scalar(select(ModelCheckpoint).where(ModelCheckpoint.round_id == rnd.id))
        model = load_model(ModelSpec.from_dict(checkpoint.architecture), checkpoint.state, torch.device("cpu"))
        test_uris = session.scalars(select(Sample.uri).where(Sample.split == SampleSplit.test)).all()
    data = campaign_data(config)
    targets = np.array([LABELS.index(data.given_label(u)) for u in test_uris])
    z = predict_probabilities(model, data.store.read(test_uris), samples=10, device=torch.device("cpu"),
                              seed=steps._seed(config, rnd), logits=True)
    from activelabel.pipeline.calibration import calibrated_probabilities

    for when, (t1, t2) in (("before", (1.0, 1.0)),
                           ("after", (calibration["temperature"], calibration["mixture_temperature"]))):
        expected = calibration_report(calibrated_probabilities(z, t1, t2), targets).to_dict()
        for key in ("accuracy", "nll", "brier", "ece"):
            assert calibration[when][key] == pytest.approx(expected[key], rel=1e-4, abs=1e-6), (when, key)

    # The CLI shows the pool's distribution of each part, as stored.
    import subprocess
    import sys

    with session_scope(engine) as session:
        epistemic = np.array(session.scalars(select(Score.epistemic).where(Score.round_id == rnd.id)).all())
    out = subprocess.run(
        [sys.executable, "-m", "activelabel.cli", "status", "calibrated", "--round", "1",
         "--database-url", f"sqlite:///{tmp_path}/calibrated.db"],
        capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if "epistemic" in l)
    cells = [c.strip() for c in line.split("│") if c.strip()]
    expected = [epistemic.min(), *np.quantile(epistemic, [0.25, 0.5, 0.75]), epistemic.max(), epistemic.mean()]
    assert cells[1] == str(len(epistemic))
    assert [float(c) for c in cells[2:]] == pytest.approx(expected, abs=6e-5)
    assert "temperature" in out.stdout and "before" in out.stdout and "after" in out.stdout
    assert "Calibration of the mean of 10 MC-dropout passes" in " ".join(out.stdout.split())


def test_calibrate_false_trains_on_every_label_and_scores_at_temperature_one(tmp_path, monkeypatch) -> None:
    from activelabel.campaign import calibrate

    monkeypatch.setattr(calibrate, "MIN_LABELS", 20)
    _, _, rnd = _seeded_campaign(tmp_path, "raw", **{"calibrate = true": "calibrate = false"})
    assert rnd.calibration is None and rnd.uncertainty["temperature"] == 1.0


def test_validation_split_is_seeded_and_only_from_500_labels() -> None:
    from activelabel.campaign.calibrate import validation_positions

    assert len(validation_positions(499, 0)) == 0
    assert len(validation_positions(500, 0)) == 75 and len(validation_positions(1000, 0)) == 150
    np.testing.assert_array_equal(validation_positions(600, 4), validation_positions(600, 4))
    assert not np.array_equal(validation_positions(600, 4), validation_positions(600, 5))
    assert len(set(validation_positions(600, 4))) == 90 and validation_positions(600, 4).max() < 600


def test_deterministic_method_is_one_softmax_pass_with_no_epistemic_part(tmp_path) -> None:
    _, engine, rnd = _seeded_campaign(tmp_path, "softmax", "entropy",
                                      **{'uncertainty = "mc_dropout"': 'uncertainty = "deterministic"'})
    assert rnd.uncertainty["method"] == "deterministic"
    assert rnd.uncertainty["samples"] == 1 and rnd.uncertainty["mode"] == "deterministic"
    with session_scope(engine) as session:
        scores = session.scalars(select(Score).where(Score.round_id == rnd.id)).all()
        assert len(scores) == 50 and all(s.epistemic == 0.0 and s.aleatoric == s.total for s in scores)


def test_bald_refuses_the_deterministic_method() -> None:
    from activelabel.campaign.config import CampaignConfig
    from activelabel.errors import ConfigError

    with pytest.raises(ConfigError, match="needs stochastic passes"):
        CampaignConfig(name="x", strategy="bald", uncertainty="deterministic")
    with pytest.raises(ConfigError, match="unknown uncertainty method 'ensemble"):
        CampaignConfig(name="x", strategy="entropy", uncertainty="ensemble+dropout")


def test_ensemble_round_stores_every_member_and_scores_their_disagreement(tmp_path) -> None:
    config, engine, rnd = _seeded_campaign(
        tmp_path, "ensemble", "bald", **{'uncertainty = "mc_dropout"': 'uncertainty = "ensemble"',
                                         "ensemble_size = 5": "ensemble_size = 3"})
    assert rnd.uncertainty["method"] == "ensemble" and rnd.uncertainty["members"] == 3
    assert rnd.uncertainty["samples"] == 3 and rnd.uncertainty["mode"] == "deterministic"
    assert rnd.training["members"] == 3  # round.training counts the members trained
    with session_scope(engine) as session:
        checkpoints = session.scalars(select(ModelCheckpoint).where(ModelCheckpoint.round_id == rnd.id)
                                      .order_by(ModelCheckpoint.member)).all()
        assert [c.member for c in checkpoints] == [0, 1, 2]
        assert len({c.state for c in checkpoints}) == 3  # different seeds, different weights
        models = [load_model(ModelSpec.from_dict(c.architecture), c.state, torch.device("cpu")) for c in checkpoints]
        scores = session.scalars(select(Score).where(Score.round_id == rnd.id).order_by(Score.sample_id)).all()
        uris = dict(session.execute(select(Sample.id, Sample.uri)).all())
    images = campaign_data(config).store.read([uris[s.sample_id] for s in scores])
    probs = predict_probabilities(models, images, samples=0, device=torch.device("cpu"), seed=0,
                                  temperature=rnd.uncertainty["temperature"])
    assert probs.shape == (3, len(scores), 10)
    np.testing.assert_allclose([s.value for s in scores], bald(probs), rtol=1e-4, atol=1e-6)
    assert max(s.epistemic for s in scores) > 0.01


def test_a_pool_with_fewer_distinct_images_than_the_batch_fills_it_with_copies() -> None:
    from types import SimpleNamespace

    rng = np.random.default_rng(3)
    base = rng.dirichlet(np.ones(4), size=(6, 3))  # [S, 3 distinct images, C]
    probs = np.concatenate([base, base[:, [0, 1]]], axis=1).astype(np.float32)  # 5 samples, 2 copies
    candidates = Candidates(10)
    candidates.offer(np.arange(5), bald(probs), probs)
    pool = [SimpleNamespace(id=100 + i) for i in range(5)]
    plan = steps._batch_plan(get_strategy("batchbald"), candidates, pool, 4, seed=0)
    assert plan["distinct"] == 3 and len(plan["sample_ids"]) == len(set(plan["sample_ids"])) == 4
    assert set(plan["sample_ids"][:3]) == {100, 101, 102}  # every distinct image before any copy


def _campaign_with_noise_images(tmp_path: Path, strategy: str, noise: int = 8):
    """Seeded campaign (30 test, 30 seed labels, 50 digit pool images) plus ``noise`` images of
    uniform noise in the pool: inputs unlike anything labeled, which softmax may still be sure of."""
    images = tmp_path / "images"
    truth = write_unlabeled_pool(images, count=110)
    names = sorted(truth)
    rng = np.random.default_rng(5)
    (images / "noise").mkdir()
    for i in range(noise):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode="L").save(images / f"noise/n{i}.png")
        truth[f"noise/n{i}.png"] = "0"
    write_manifest(tmp_path / "truth.csv", truth, base=images)
    write_manifest(tmp_path / "test.csv", {n: truth[n] for n in names[:30]}, base=images)
    write_manifest(tmp_path / "seeds.csv", {n: truth[n] for n in names[30:60]}, base=images)
    return _first_round(tmp_path, strategy)


def _first_round(tmp_path: Path, strategy: str):
    """Run round 1 of the campaign over ``tmp_path``'s images, test.csv and seeds.csv (10
    epochs, batches of 8); its config, engine, round, (score, uri) rows and picked uris."""
    config, _ = load_campaign_file(campaign_file(
        tmp_path, strategy, strategy, **{"# test = ...": 'test = "test.csv"', "# labeled = ...": 'labeled = "seeds.csv"',
                                         "epochs = 3": "epochs = 10", "batch_size = 10": "batch_size = 8"}))
    engine = open_engine(f"sqlite:///{tmp_path}/{strategy}.db")
    run_rounds(engine, prepare_campaign(engine, config), 1)
    with session_scope(engine) as session:
        rnd = session.scalar(select(Round).where(Round.index == 1))
        rows = session.execute(select(Score, Sample.uri).join(Sample, Sample.id == Score.sample_id)
                               .where(Score.round_id == rnd.id).order_by(Score.sample_id)).all()
        picked = session.scalars(select(Sample.uri).join(Selection, Selection.sample_id == Sample.id)
                                 .where(Selection.round_id == rnd.id).order_by(Selection.rank)).all()
        session.expunge_all()
    return config, engine, rnd, [(score, uri) for score, uri in rows], picked


MEASURED_CLASSES = ("0", "1", "7")


def _measured_campaign_with_noise_images(tmp_path: Path, strategy: str, noise: int = 8, per_class: int = 140):
    """Like :func:`_campaign_with_noise_images`, but every labeled class has more samples
    (``per_class``) than the small CNN's 128 feature dimensions, so the round's density is
    measured (``density_measured``): three digit classes, 30 test images, the rest of those
    classes in the pool with ``noise`` images of uniform noise. Below that regime the class
    covariances are held up by jitter and the threshold is meaningless (around -1e14 nats),
    so whether noise falls below it depends on float rounding of the machine."""
    images = tmp_path / "images"
    truth = write_unlabeled_pool(images, count=1797, jpeg_every=10_000)  # every bundled digit
    for rel, label in list(truth.items()):
        if label not in MEASURED_CLASSES:
            (images / rel).unlink()
            del truth[rel]
    names = sorted(truth)
    seeds = [n for c in MEASURED_CLASSES for n in [m for m in names if truth[m] == c][:per_class]]
    rest = [n for n in names if n not in set(seeds)]
    rng = np.random.default_rng(5)
    (images / "noise").mkdir()
    for i in range(noise):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), mode="L").save(images / f"noise/n{i}.png")
        truth[f"noise/n{i}.png"] = MEASURED_CLASSES[0]
    write_manifest(tmp_path / "truth.csv", truth, base=images)
    write_manifest(tmp_path / "test.csv", {n: truth[n] for n in rest[:30]}, base=images)
    write_manifest(tmp_path / "seeds.csv", {n: truth[n] for n in seeds}, base=images)
    _, _, rnd, rows, picked = _first_round(tmp_path, strategy)
    return rnd, rows, picked


def test_a_measured_density_flags_every_noise_image_out_of_distribution_and_few_digits(tmp_path) -> None:
    from activelabel.campaign.uncertainty_report import density_measured

    rnd, rows, picked = _measured_campaign_with_noise_images(tmp_path, "density")
    summary = rnd.uncertainty["density"]
    assert summary["labeled"] == 420 and summary["dim"] == 128 and summary["classes"] == 3
    assert summary["smallest_class"] == 140 and density_measured(summary)
    assert -1e6 < summary["threshold"] < 1e6  # a real log density, not the jittered regime's -1e14
    assert [s.ood for s, _ in rows] == [bool(s.log_density < summary["threshold"]) for s, _ in rows]
    assert summary["flagged"] == sum(s.ood for s, _ in rows)
    assert all(s.ood for s, uri in rows if uri.startswith("noise/"))  # every noise image is flagged
    digits = [s.ood for s, uri in rows if not uri.startswith("noise/")]
    assert len(digits) > 60 and sum(digits) <= 0.15 * len(digits)  # and few of the digits like the labeled ones
    # The density strategy spends the batch (8) on the unfamiliar inputs: nearly all of it on noise
    # (an odd digit may look stranger than the least strange noise image).
    assert sum(uri.startswith("noise/") for uri in picked) >= 6


@pytest.fixture(scope="module")
def density_round(tmp_path_factory):
    """One density campaign shared by the tests that only read it (a round costs a minute)."""
    clear_cache()
    tmp_path = tmp_path_factory.mktemp("density")
    yield tmp_path, *_campaign_with_noise_images(tmp_path, "density")
    clear_cache()


def test_density_round_scores_minus_log_density_and_picks_the_noise_first(density_round) -> None:
    from activelabel.acquisition import fit_class_gaussians

    tmp_path, config, engine, rnd, rows, picked = density_round
    assert rnd.kind.value == "active" and len(rows) == 58
    summary = rnd.uncertainty["density"]
    assert summary["labeled"] == 30 and summary["dim"] == 128 and summary["percentile"] == 5.0
    threshold = summary["threshold"]
    log_q = np.array([s.log_density for s, _ in rows])
    np.testing.assert_array_equal([s.value for s, _ in rows], -log_q)  # the score is -log q(z)
    assert [s.ood for s, _ in rows] == [bool(q < threshold) for q in log_q]
    assert summary["flagged"] == sum(s.ood for s, _ in rows)
    # 3 labels per class in 128 dimensions: not measured yet, so no claim on the flag here (see
    # test_a_measured_density_flags_every_noise_image...), but the ranking already puts the noise first.
    assert summary["smallest_class"] <= summary["dim"]
    assert set(picked) == {f"noise/n{i}.png" for i in range(8)}  # the batch is exactly the noise images

    # The stored densities are those of the class Gaussians fitted on the seed labels' features.
    with session_scope(engine) as session:
        checkpoint = session.scalar(select(ModelCheckpoint).where(ModelCheckpoint.round_id == rnd.id))
        model = load_model(ModelSpec.from_dict(checkpoint.architecture), checkpoint.state, torch.device("cpu"))
    store = campaign_data(config).store
    seeds = [line.split(",") for line in (tmp_path / "seeds.csv").read_text().splitlines()[1:]]
    seed_uris = [str(Path(p).relative_to("images").as_posix()) for p, _ in seeds]
    from activelabel.pipeline.prediction import predict_stream

    def embed(uris):  # the round's own deterministic feature pass (its memory layout included:
        # with 1 sample per class in 128 dimensions, float rounding alone moves log q by 10x)
        [(_, features)] = predict_stream(model, [store.read(uris)], samples=0, device=torch.device("cpu"),
                                         seed=0, features=True)
        return features.astype(np.float64)

    labeled, pool = embed(seed_uris), embed([uri for _, uri in rows])
    density = fit_class_gaussians(labeled, np.array([int(label) for _, label in seeds]), 10)
    np.testing.assert_allclose(density.log_density(pool), log_q, rtol=1e-4)


def test_every_model_round_stores_density_and_flag_beside_its_own_score(tmp_path) -> None:
    _, _, rnd, rows, _ = _campaign_with_noise_images(tmp_path, "entropy")
    assert all(s.log_density is not None and s.ood is not None for s, _ in rows)
    np.testing.assert_allclose([s.value for s, _ in rows], [s.total for s, _ in rows], rtol=1e-5)
    noise = [s.log_density for s, uri in rows if uri.startswith("noise/")]
    digits = [s.log_density for s, uri in rows if not uri.startswith("noise/")]
    assert max(noise) < np.median(digits)
    assert rnd.uncertainty["density"]["flagged"] == sum(s.ood for s, _ in rows)


def test_status_round_shows_the_density_and_how_many_samples_are_flagged(density_round) -> None:
    import os
    import subprocess
    import sys

    tmp_path, _, _, rnd, rows, _ = density_round
    out = subprocess.run(
        [sys.executable, "-m", "activelabel.cli", "status", "density", "--round", "1",
         "--database-url", f"sqlite:///{tmp_path}/density.db"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    # Not measured yet (below): no row of log densities, whose values mean nothing yet (trial 13 F6).
    assert not [line for line in out.stdout.splitlines() if "│ log density" in line]
    line = next(l for l in out.stdout.splitlines() if "│ total" in l)
    cells = [c.strip() for c in line.split("│") if c.strip()]
    assert cells[1] == "58" and float(cells[4]) == pytest.approx(np.median([s.total for s, _ in rows]), abs=1e-4)
    text = " ".join(out.stdout.split())
    assert rnd.uncertainty["density"]["smallest_class"] == 1  # 30 seed labels over 10 classes, D = 128
    # Not measured yet: no threshold and no flagged count (they mean nothing), as in the report.
    assert ("Feature density: not measured yet — class Gaussians on 30 labeled samples (128 features), but the "
            "smallest class has 1 labeled sample, not more than the 128 feature dimensions") in text
    assert "flagged out of distribution" not in text


def test_the_density_lines_say_one_sample_and_one_class_in_the_singular() -> None:
    from activelabel.campaign.uncertainty_report import describe_density

    one = {"labeled": 3, "dim": 1, "flagged": 1, "threshold": -3.5, "percentile": 5.0, "classes": 1,
           "num_classes": 2, "smallest_class": 3}
    assert describe_density(one) == [
        ("Feature density: class Gaussians on 3 labeled samples (1 feature); 1 pool sample flagged out of "
         "distribution (log density below -3.5, the labeled set's 5th percentile, out of fold).", False),
        ("  1 class has no labeled sample, so no Gaussian: the density cannot tell their inputs from any other "
         "unfamiliar input.", True),
    ]
    many = dict(one, labeled=1200, dim=128, flagged=0, classes=7, num_classes=10, smallest_class=3)
    texts = [text for text, _ in describe_density(many)]
    assert texts == [
        "Feature density: not measured yet — class Gaussians on 1,200 labeled samples (128 features), but the "
        "smallest class has 3 labeled samples, not more than the 128 feature dimensions: its covariance is held up "
        "by jitter and log densities run to meaningless extremes, so no threshold and no out-of-distribution flag "
        "until every class has more than 128 labeled samples.",
        "  3 classes have no labeled sample, so no Gaussian: the density cannot tell their inputs from any other "
        "unfamiliar input.",
    ]
    single = dict(one, labeled=1, smallest_class=1)
    assert describe_density(single)[0][0].startswith(
        "Feature density: not measured yet — class Gaussians on 1 labeled sample (1 feature), but the smallest "
        "class has 1 labeled sample, not more than the 1 feature dimension:")


def test_data_counts_and_counted_use_the_singular_for_one() -> None:
    from activelabel.campaign.summary import DataCounts, counted

    assert counted(1, "labeled sample") == "1 labeled sample"
    assert counted(0, "labeled sample") == "0 labeled samples"
    assert counted(2, "copy", "copies") == "2 copies"
    assert DataCounts({"pool": 39}, 1, 0, 1).describe() == (
        "Samples: 39 pool · 1 byte-identical copy (labeled once with its original) · 0 unreadable (skipped) · "
        "1 labeled")
    assert DataCounts({"pool": 38}, 2, 0, 1).describe() == (
        "Samples: 38 pool · 2 byte-identical copies (labeled once with their original) · 0 unreadable (skipped) · "
        "1 labeled")
    # A copy of an evaluation image (dropped in mid-campaign) is counted apart in its split,
    # so the evaluation count matches evaluation_size.
    assert DataCounts({"evaluation": 11, "pool": 35}, 2, 0, 10, {"evaluation": 1, "pool": 1}).describe() == (
        "Samples: 10 evaluation (+1 copy), 34 pool (+1 copy) · 2 byte-identical copies (labeled once with their "
        "original) · 0 unreadable (skipped) · 10 labeled")
