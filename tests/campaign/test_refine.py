"""Refinement (issue 12, selection stability): the pool's top candidates re-scored with more MC
passes under their own mask stream. Real models, real in-memory and file stores, the round's
own steps on SQLite."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sqlalchemy import select

from activelabel.acquisition import bald, get_strategy
from activelabel.campaign import steps
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import campaign_data, clear_cache
from activelabel.campaign.refine import choose_candidates, refine_pool, refine_seed, refines, rescore
from activelabel.errors import ConfigError
from activelabel.pipeline.checkpoint import load_model
from activelabel.pipeline.model import ModelSpec, build_model
from activelabel.pipeline.prediction import predict_probabilities
from activelabel.pipeline.store import ArrayStore
from activelabel.storage import ModelCheckpoint, Sample, Score, Selection, session_scope

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _fresh_data_cache():
    clear_cache()
    yield
    clear_cache()


def _model_and_store(conv_dropout: float, n: int = 60):
    torch.manual_seed(0)
    model = build_model(ModelSpec(1, 10, width=8, conv_dropout=conv_dropout)).eval()
    images = np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32)
    uris = [f"img{i:03d}" for i in range(n)]
    return model, images, ArrayStore(images, uris), uris


@pytest.mark.parametrize("conv_dropout", [0.0, 0.25])  # head-only and full-network modes
def test_refined_scores_equal_a_direct_scoring_and_do_not_depend_on_chunks_or_company(conv_dropout) -> None:
    model, images, store, uris = _model_and_store(conv_dropout)
    strategy = get_strategy("bald")
    seed, passes = 1234, 40
    candidates = np.array([3, 7, 8, 20, 41, 59])
    refined = refine_pool(model, store, uris, candidates, strategy=strategy, passes=passes, seed=seed,
                          temperature=1.5, device=CPU, workers=0, problems=[])
    direct = predict_probabilities(model, images[candidates], samples=passes, device=CPU, seed=refine_seed(seed),
                                   temperature=1.5)
    np.testing.assert_array_equal(refined.positions, candidates)
    np.testing.assert_allclose(refined.values, bald(direct), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(refined.total, refined.aleatoric + refined.epistemic, atol=1e-9)
    assert refined.summary() == {"candidates": 6, "passes": 40}
    # The first stage's own stream (seed) gives other masks: the refined passes are fresh draws.
    first = predict_probabilities(model, images[candidates], samples=passes, device=CPU, seed=seed,
                                  temperature=1.5)
    assert not np.allclose(bald(first), refined.values, rtol=1e-3, atol=0)

    # Chunk size and the other candidates change nothing about a candidate's refined figures.
    for batch_size, subset in ((1, candidates), (4, candidates[::-1].copy()), (256, np.array([7, 41]))):
        again = refine_pool(model, store, uris, subset, strategy=strategy, passes=passes, seed=seed,
                            temperature=1.5, device=CPU, workers=0, problems=[], batch_size=batch_size)
        where = np.searchsorted(candidates, again.positions)
        np.testing.assert_allclose(again.values, refined.values[where], rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(again.epistemic, refined.epistemic[where], rtol=1e-5, atol=1e-8)


def test_refine_seed_is_its_own_stream_and_candidates_are_the_top_m_with_ties_by_position() -> None:
    assert refine_seed(5) == refine_seed(5) and refine_seed(5) != refine_seed(6)
    assert refine_seed(5) not in (5, 6) and refine_seed(-1) >= 0
    values = np.array([0.5, 0.9, 0.5, 0.1, 0.9, 0.7])
    positions = np.array([10, 11, 12, 13, 14, 15])
    np.testing.assert_array_equal(choose_candidates(values, positions, 3), [11, 14, 15])
    np.testing.assert_array_equal(choose_candidates(values, positions, 4), [10, 11, 14, 15])  # 10 before 12
    np.testing.assert_array_equal(choose_candidates(values, positions, 99), positions)


def test_only_per_sample_strategies_reading_mc_passes_refine() -> None:
    assert [name for name in ("bald", "mean_std", "variation_ratios", "entropy", "margin", "least_confidence",
                              "random", "density", "batchbald", "power_bald", "softmax_bald")
            if refines(get_strategy(name), 20)] == ["bald", "mean_std", "variation_ratios"]
    assert not refines(get_strategy("bald"), 0)  # no MC passes (deterministic, plain ensemble)


def test_rescore_ranks_candidates_by_refined_score_and_plans_them_in_that_order() -> None:
    probs = np.random.default_rng(2).dirichlet(np.ones(3), size=(8, 5))
    refined = rescore(get_strategy("bald"), [(np.array([9, 2]), probs[:, 3:]), (np.array([4, 7, 0]), probs[:, :3])],
                      passes=8)
    np.testing.assert_array_equal(refined.positions, [0, 2, 4, 7, 9])  # sorted, columns follow
    expected = bald(probs)[[2, 4, 0, 1, 3]]  # positions 0, 2, 4, 7, 9 are columns 2, 4, 0, 1, 3
    np.testing.assert_allclose(refined.values, expected)
    plan = refined.plan([100 + i for i in range(10)])
    order = np.argsort(-expected, kind="stable")
    assert plan["sample_ids"] == [100 + int(refined.positions[i]) for i in order] and plan["refined"] is True
    np.testing.assert_allclose(plan["scores"], expected[order])


def test_config_checks_refinement_settings() -> None:
    assert CampaignConfig(name="x").refine_count == 10 * 20
    assert CampaignConfig(name="x", refine_candidates=25).refine_count == 25
    assert CampaignConfig(name="x", refine_passes=0).refine_passes == 0
    with pytest.raises(ConfigError, match="refine_passes must be 0 .* at least 2, got 1"):
        CampaignConfig(name="x", refine_passes=1)
    with pytest.raises(ConfigError, match="refine_passes must be 0"):
        CampaignConfig(name="x", refine_passes=-5)
    with pytest.raises(ConfigError, match=r"refine_candidates must hold at least one batch \(20 = batch_size\).*got 19"):
        CampaignConfig(name="x", refine_candidates=19)


def test_campaign_file_documents_and_checks_refinement(tmp_path) -> None:
    from activelabel.campaign.file import load_campaign_file, template

    text = template("x")
    assert CampaignConfig(name='x').refine_passes is None
    assert "# refine_passes = ...  # Refinement" in text
    assert "# refine_candidates = ...  # Pool samples refined each round" in text
    path = tmp_path / "c.toml"
    path.write_text('[campaign]\nname = "x"\nbatch_size = 8\nrefine_candidates = 5\n'
                    '[data]\npool = "p"\nlabels = ["a", "b"]\n')
    with pytest.raises(ConfigError, match=r"refine_candidates must hold at least one batch \(8 = batch_size\)"):
        load_campaign_file(path)


def test_a_bald_round_refines_its_top_candidates_and_selects_among_them_only(tmp_path) -> None:
    from test_campaign_uncertainty import _seeded_campaign

    config, engine, rnd = _seeded_campaign(tmp_path, "refined", "bald", **{
        "# refine_passes = ...": "refine_passes = 60", "# refine_candidates = ...": "refine_candidates = 15"})
    assert rnd.kind.value == "active" and config.refine_passes == 60 and config.refine_candidates == 15
    assert rnd.uncertainty["refined"] == {"candidates": 15, "passes": 60}
    with session_scope(engine) as session:
        checkpoint = session.scalar(select(ModelCheckpoint).where(ModelCheckpoint.round_id == rnd.id))
        model = load_model(ModelSpec.from_dict(checkpoint.architecture), checkpoint.state, CPU)
        scores = session.scalars(select(Score).where(Score.round_id == rnd.id).order_by(Score.sample_id)).all()
        uris = dict(session.execute(select(Sample.id, Sample.uri)).all())
        picked = session.scalars(select(Selection.sample_id).where(Selection.round_id == rnd.id)
                                 .order_by(Selection.rank)).all()
    ids = np.array([s.sample_id for s in scores])
    images = campaign_data(config).store.read([uris[int(i)] for i in ids])
    seed, temperature = steps._seed(config, rnd), rnd.uncertainty["temperature"]
    first = bald(predict_probabilities(model, images, samples=config.mc_samples, device=CPU, seed=seed,
                                       temperature=temperature))
    chosen = choose_candidates(first, np.arange(len(ids)), 15)  # pool order is sample-id order here
    refined = predict_probabilities(model, images[chosen], samples=60, device=CPU, seed=refine_seed(seed),
                                    temperature=temperature)
    stored = np.array([s.value for s in scores])
    np.testing.assert_allclose(stored[chosen], bald(refined), rtol=1e-4, atol=1e-7)  # candidates: refined
    others = np.setdiff1d(np.arange(len(ids)), chosen)
    np.testing.assert_allclose(stored[others], first[others], rtol=1e-4, atol=1e-7)  # the rest: first stage
    epistemic = np.array([s.epistemic for s in scores])
    np.testing.assert_allclose(epistemic[chosen], bald(refined), rtol=1e-4, atol=1e-7)
    # The batch: the top 10 candidates by refined score, none from outside the candidates,
    # even where a non-candidate's first-stage score beats a selected candidate's refined one.
    expected = ids[chosen][np.lexsort((ids[chosen], -stored[chosen]))][:10]
    assert list(picked) == [int(i) for i in expected]
    assert set(picked) <= set(ids[chosen].tolist())
    assert rnd.batch_plan["sample_ids"][:10] == list(picked) and len(rnd.batch_plan["sample_ids"]) == 15


def test_the_refinement_costs_at_most_the_first_stage_unless_only_the_head_is_sampled() -> None:
    from activelabel.campaign.refine import refinement_passes

    # Unset: 10,000 images x 20 passes over 200 candidates: the full 1,000 passes.
    assert refinement_passes(None, "full_network", scored=10_000, samples=20, candidates=200) == 1000
    # The digits demo: 1,500 x 20 / 100 = 300 passes.
    assert refinement_passes(None, "full_network", scored=1_500, samples=20, candidates=100) == 300
    assert refinement_passes(None, "naive", scored=1_500, samples=20, candidates=100) == 300
    # Never fewer than twice the first stage's passes.
    assert refinement_passes(None, "full_network", scored=100, samples=20, candidates=100) == 40
    # Head-only: the head passes are one matrix product; the default runs whole.
    assert refinement_passes(None, "head_only", scored=1_500, samples=50, candidates=100) == 1000
    # Set by the user: runs as set, whatever the mode.
    assert refinement_passes(7000, "head_only", scored=1_500, samples=50, candidates=100) == 7000
    assert refinement_passes(60, "full_network", scored=110, samples=3, candidates=15) == 60
