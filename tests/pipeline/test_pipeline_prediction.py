"""The CNN and MC-dropout prediction: shapes, randomness, seeding, module modes, chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from activelabel.pipeline.model import ModelSpec, SmallCNN, build_model
from activelabel.pipeline.prediction import mc_dropout, predict_probabilities, predict_stream

CPU = torch.device("cpu")
SPEC = ModelSpec(in_channels=1, num_classes=10, width=8)


def _images(n: int, size: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, size, size), dtype=np.float32)


@pytest.fixture
def model() -> SmallCNN:
    """A small CNN whose batch-norm running stats are non-trivial (one train-mode pass)."""
    torch.manual_seed(0)
    net = build_model(SPEC)
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(_images(16, seed=99)) * 3.0 + 1.0)
    net.eval()
    return net


def _modes(net: nn.Module) -> dict[str, bool]:
    return {name: m.training for name, m in net.named_modules()}


def _bn_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.clone()
        for k, v in net.state_dict().items()
        if "running" in k or "num_batches_tracked" in k
    }


def test_model_spec_round_trips_through_dict() -> None:
    data = SPEC.to_dict()
    assert data == {
        "name": "small_cnn",
        "in_channels": 1,
        "num_classes": 10,
        "width": 8,
        "conv_dropout": 0.25,
        "head_dropout": 0.5,
    }
    assert ModelSpec.from_dict(data) == SPEC


@pytest.mark.parametrize("size", [8, 28])
def test_model_output_shape_for_any_square_size(size: int) -> None:
    net = build_model(ModelSpec(in_channels=1, num_classes=7, width=4)).eval()
    out = net(torch.zeros(3, 1, size, size))
    assert out.shape == (3, 7)


def test_mc_samples_shape_dtype_and_rows_sum_to_one(model: SmallCNN) -> None:
    probs = predict_probabilities(model, _images(12), samples=5, device=CPU, seed=0)
    assert probs.shape == (5, 12, 10)
    assert probs.dtype == np.float32
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=-1), np.ones((5, 12)), atol=1e-5)


def test_mc_passes_differ_with_dropout(model: SmallCNN) -> None:
    probs = predict_probabilities(model, _images(12), samples=4, device=CPU, seed=0)
    for t in range(1, 4):
        assert not np.allclose(probs[0], probs[t]), f"pass {t} equals pass 0: dropout is off"


def test_same_seed_same_output_different_seed_different(model: SmallCNN) -> None:
    x = _images(12)
    a = predict_probabilities(model, x, samples=3, device=CPU, seed=7)
    # Disturb the global RNG in between: the function must reseed itself.
    torch.rand(1000)
    b = predict_probabilities(model, x, samples=3, device=CPU, seed=7)
    c = predict_probabilities(model, x, samples=3, device=CPU, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_samples_zero_is_one_deterministic_eval_pass(model: SmallCNN) -> None:
    x = _images(12)
    probs = predict_probabilities(model, x, samples=0, device=CPU, seed=0)
    assert probs.shape == (1, 12, 10)
    again = predict_probabilities(model, x, samples=0, device=CPU, seed=123)
    np.testing.assert_array_equal(probs, again)  # the seed is irrelevant without dropout
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(x)), dim=-1).numpy()
    np.testing.assert_allclose(probs[0], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("start_in_train_mode", [True, False])
def test_mc_dropout_modes_inside_and_restored_after(model: SmallCNN, start_in_train_mode: bool) -> None:
    model.train(start_in_train_mode)
    before = _modes(model)
    assert all(mode is start_in_train_mode for mode in before.values())
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(dropouts) == 2 and len(norms) == 2

    with mc_dropout(model) as inside:
        assert inside is model
        assert all(m.training for m in dropouts)
        assert not any(m.training for m in norms)
        others = [m for m in model.modules() if not isinstance(m, nn.Dropout)]
        assert not any(m.training for m in others)

    assert _modes(model) == before


def test_mc_dropout_restores_mixed_modes_even_on_error(model: SmallCNN) -> None:
    model.train()
    model.head.eval()  # a mixed state: features training, head eval
    before = _modes(model)
    with pytest.raises(RuntimeError, match="boom"):
        with mc_dropout(model):
            raise RuntimeError("boom")
    assert _modes(model) == before
    assert model.features.training and not model.head.training


@pytest.mark.parametrize("samples", [0, 3])
def test_predict_restores_train_mode(model: SmallCNN, samples: int) -> None:
    model.train()
    before = _modes(model)
    predict_probabilities(model, _images(4), samples=samples, device=CPU, seed=0)
    assert _modes(model) == before


@pytest.mark.parametrize("start_in_train_mode", [True, False])
@pytest.mark.parametrize("samples", [0, 3])
def test_predict_leaves_batchnorm_running_stats_unchanged(
    model: SmallCNN, start_in_train_mode: bool, samples: int
) -> None:
    model.train(start_in_train_mode)
    before = _bn_state(model)
    assert before["features.1.running_mean"].abs().sum() > 0  # the fixture moved the stats
    predict_probabilities(model, _images(20, seed=3) * 5.0, samples=samples, device=CPU, seed=0)
    after = _bn_state(model)
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


def test_chunking_gives_same_deterministic_result(model: SmallCNN) -> None:
    x = _images(23)
    whole = predict_probabilities(model, x, samples=0, device=CPU, seed=0, batch_size=512)
    chunked = predict_probabilities(model, x, samples=0, device=CPU, seed=0, batch_size=5)
    assert chunked.shape == whole.shape == (1, 23, 10)
    np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6)


def test_chunked_mc_shape_and_reproducible(model: SmallCNN) -> None:
    x = _images(11)
    a = predict_probabilities(model, x, samples=2, device=CPU, seed=5, batch_size=4)
    b = predict_probabilities(model, x, samples=2, device=CPU, seed=5, batch_size=4)
    assert a.shape == (2, 11, 10)
    np.testing.assert_allclose(a.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("samples", "passes"), [(4, 4), (0, 1)])
def test_empty_input_shape(model: SmallCNN, samples: int, passes: int) -> None:
    calls: list[tuple[int, int]] = []
    probs = predict_probabilities(
        model,
        np.zeros((0, 1, 8, 8), np.float32),
        samples=samples,
        device=CPU,
        seed=0,
        on_batch=lambda done, total: calls.append((done, total)),
    )
    assert probs.shape == (passes, 0, 10)
    assert probs.dtype == np.float32
    assert calls == []


def test_on_batch_reports_increasing_counts_ending_at_n(model: SmallCNN) -> None:
    calls: list[tuple[int, int]] = []
    predict_probabilities(
        model,
        _images(10),
        samples=2,
        device=CPU,
        seed=0,
        batch_size=4,
        on_batch=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(4, 10), (8, 10), (10, 10)]


# --- shared masks and the fast modes ---------------------------------------------------------

from activelabel.pipeline.prediction import SharedMasks, mc_strategy  # noqa: E402


def test_naive_pass_is_the_network_with_the_shared_masks_written_out(model: SmallCNN) -> None:
    """Pass t multiplies each dropout's input by mask (seed, t, layer), broadcast over the batch."""
    x = torch.from_numpy(_images(6))
    probs = predict_probabilities(model, x.numpy(), samples=3, device=CPU, seed=11, mode="naive")
    masks = SharedMasks(model, 11)
    model.eval()
    with torch.no_grad():
        for t in range(3):
            h = model.features[:7](model.normalize(x))
            h = h * masks.mask(0, t, tuple(h.shape[1:]), CPU)
            h = model.head[:2](model.features[8:](h))
            h = h * masks.mask(1, t, tuple(h.shape[1:]), CPU)
            expected = torch.softmax(model.head[3](h), dim=-1).numpy()
            np.testing.assert_allclose(probs[t], expected, rtol=0, atol=1e-6)
    # Masks are inverted-dropout masks: 0 or 1/(1-p), about a fraction p of zeros.
    big = masks.mask(0, 0, (32, 14, 14), CPU)
    assert torch.unique(big).tolist() == pytest.approx([0.0, 1 / (1 - 0.25)])
    assert abs(float((big == 0).float().mean()) - 0.25) < 0.03


def test_full_network_mode_equals_naive_passes(model: SmallCNN) -> None:
    assert mc_strategy(model, 5) == "full_network"
    x = _images(17, size=28)
    naive = predict_probabilities(model, x, samples=5, device=CPU, seed=3, mode="naive")
    fast = predict_probabilities(model, x, samples=5, device=CPU, seed=3)
    np.testing.assert_allclose(fast, naive, rtol=0, atol=1e-6)
    assert not np.allclose(naive[0], naive[1])


def test_head_only_mode_equals_naive_passes_for_both_model_kinds() -> None:
    torch.manual_seed(4)
    cnn = build_model(ModelSpec(in_channels=1, num_classes=10, width=8, conv_dropout=0.0)).eval()
    r18 = build_model(ModelSpec(in_channels=1, num_classes=6, architecture="resnet18")).eval()
    for net, size in ((cnn, 8), (r18, 32)):
        assert mc_strategy(net, 4) == "head_only"
        x = _images(9, size=size)
        naive = predict_probabilities(net, x, samples=4, device=CPU, seed=8, mode="naive")
        chain = predict_probabilities(net, x, samples=4, device=CPU, seed=8, mode="full_network")
        fast = predict_probabilities(net, x, samples=4, device=CPU, seed=8)
        np.testing.assert_allclose(fast, naive, rtol=0, atol=1e-5)
        np.testing.assert_allclose(chain, naive, rtol=0, atol=1e-5)
        assert not np.allclose(naive[0], naive[1])  # the head dropout is live


def test_a_samples_output_does_not_depend_on_its_position_or_the_chunk_size(model: SmallCNN) -> None:
    x = _images(30)
    base = predict_probabilities(model, x, samples=6, device=CPU, seed=2, batch_size=30)
    order = np.random.default_rng(0).permutation(30)
    for batch_size in (1, 7, 30):
        permuted = predict_probabilities(model, x[order], samples=6, device=CPU, seed=2, batch_size=batch_size)
        np.testing.assert_allclose(permuted, base[:, order], rtol=0, atol=1e-6)


def test_a_forced_mode_that_does_not_apply_is_refused(model: SmallCNN) -> None:
    with pytest.raises(ValueError, match="head_only"):
        predict_probabilities(model, _images(2), samples=2, device=CPU, seed=0, mode="head_only")


def test_temperature_divides_the_logits_of_every_pass(model: SmallCNN) -> None:
    x = _images(5)
    logits = predict_probabilities(model, x, samples=3, device=CPU, seed=1, logits=True)
    hot = predict_probabilities(model, x, samples=3, device=CPU, seed=1, temperature=2.5)
    expected = torch.softmax(torch.from_numpy(logits) / 2.5, dim=-1).numpy()
    np.testing.assert_allclose(hot, expected, rtol=0, atol=1e-6)
    cold = predict_probabilities(model, x, samples=3, device=CPU, seed=1, logits=True, temperature=0.5)
    np.testing.assert_allclose(cold, logits * 2.0, rtol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        predict_probabilities(model, x, samples=3, device=CPU, seed=1, temperature=0.0)


def test_an_ensemble_stacks_its_members_passes_member_major(model: SmallCNN) -> None:
    torch.manual_seed(5)
    other = build_model(SPEC).eval()
    x = _images(7)
    both = predict_probabilities([model, other], x, samples=3, device=CPU, seed=4)
    assert both.shape == (6, 7, 10)
    np.testing.assert_array_equal(both[:3], predict_probabilities(model, x, samples=3, device=CPU, seed=4))
    deterministic = predict_probabilities([model, other], x, samples=0, device=CPU, seed=0)
    np.testing.assert_allclose(deterministic[1], predict_probabilities(other, x, samples=0, device=CPU, seed=0)[0],
                               atol=1e-6)
    # Member 1 draws its own masks: the same network twice is not the same passes twice.
    twice = predict_probabilities([model, model], x, samples=3, device=CPU, seed=4)
    assert not np.allclose(twice[:3], twice[3:])


@pytest.mark.parametrize("mode", ["naive", "full_network"])
def test_features_are_the_deterministic_embedding_whatever_the_mc_mode(mode: str) -> None:
    from activelabel.pipeline.model import ModelSpec, build_model

    torch.manual_seed(0)
    model = build_model(ModelSpec(num_classes=3, in_channels=1, dropout=0.5, conv_dropout=0.25))
    x = torch.rand(10, 1, 8, 8)
    with torch.no_grad():
        model.eval()
        expected = model.embed(x).numpy()
    plain = list(predict_stream(model, [x[:6], x[6:]], samples=4, device=torch.device("cpu"), seed=3, mode=mode))
    both = list(predict_stream(model, [x[:6], x[6:]], samples=4, device=torch.device("cpu"), seed=3, mode=mode,
                               features=True))
    np.testing.assert_allclose(np.concatenate([f for _, f in both]), expected, rtol=1e-5, atol=1e-6)
    for p, (q, _) in zip(plain, both):  # asking for features leaves the MC passes unchanged
        np.testing.assert_array_equal(p, q)


def test_features_need_a_model_with_embed() -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="embed"):
        next(predict_stream(net, [torch.rand(2, 1, 2, 2)], samples=2, device=torch.device("cpu"), seed=0,
                            features=True))


def test_head_only_matrix_product_in_groups_of_passes_equals_naive(monkeypatch) -> None:
    from activelabel.pipeline import prediction

    torch.manual_seed(5)
    cnn = build_model(ModelSpec(in_channels=1, num_classes=10, width=8, conv_dropout=0.0)).eval()
    x = _images(3, size=8)
    naive = predict_probabilities(cnn, x, samples=300, device=CPU, seed=9, mode="naive")
    # 3 images x 10 classes x 128 features fit the budget; 4,000 // 30 = 133 passes per product.
    monkeypatch.setattr(prediction, "_GROUP_ELEMENTS", 4000)
    fast = predict_probabilities(cnn, x, samples=300, device=CPU, seed=9)
    np.testing.assert_allclose(fast, naive, rtol=0, atol=1e-5)
    assert len({tuple(np.round(p[0], 5)) for p in naive}) > 100  # the passes really differ


# --- mask blocks: one generator draw per block of passes ------------------------------------

from activelabel.pipeline.prediction import _BLOCK_PASSES, _block_passes  # noqa: E402


def test_block_size_depends_only_on_the_mask_shape() -> None:
    assert _block_passes(128) == _BLOCK_PASSES == 1024
    assert _block_passes(32 * 14 * 14) == 512  # 1,024 masks of 6,272 would exceed 4M elements
    assert _block_passes(1 << 23) == 1


def test_a_pass_mask_does_not_depend_on_which_passes_were_drawn_before_or_together(model: SmallCNN) -> None:
    """Pass t's mask is the same whether asked alone, in a range across a block boundary, or
    after other blocks; different passes (also t and t + B) get different masks."""
    shape = (128,)
    together = SharedMasks(model, 5).masks(1, range(1020, 1030), shape, CPU)
    assert together.shape == (10, 128)
    for i, t in enumerate(range(1020, 1030)):
        alone = SharedMasks(model, 5)
        alone.mask(1, 3000, shape, CPU)  # another block first
        torch.testing.assert_close(alone.mask(1, t, shape, CPU), together[i], rtol=0, atol=0)
    first = SharedMasks(model, 5)
    assert not torch.equal(first.mask(1, 0, shape, CPU), first.mask(1, 1024, shape, CPU))
    assert not torch.equal(first.mask(1, 0, shape, CPU), first.mask(1, 1, shape, CPU))
    assert not torch.equal(first.mask(1, 0, shape, CPU), SharedMasks(model, 6).mask(1, 0, shape, CPU))
    keep = first.masks(1, range(0, 2048), shape, CPU)
    assert abs(float((keep == 0).float().mean()) - 0.5) < 0.01  # head dropout p = 0.5


def test_the_first_passes_of_a_longer_run_are_the_passes_of_a_shorter_one() -> None:
    """Head-only passes across more than one block: T = 3 is the start of T = 1,100, and every
    chunking gives the same numbers."""
    torch.manual_seed(2)
    net = build_model(ModelSpec(in_channels=1, num_classes=10, width=8, conv_dropout=0.0)).eval()
    x = _images(9, size=28)
    short = predict_probabilities(net, x, samples=3, device=CPU, seed=8)
    long = predict_probabilities(net, x, samples=1100, device=CPU, seed=8, batch_size=4)
    whole = predict_probabilities(net, x, samples=1100, device=CPU, seed=8, batch_size=9)
    np.testing.assert_allclose(long[:3], short, rtol=0, atol=1e-6)
    np.testing.assert_allclose(long, whole, rtol=0, atol=1e-6)
    naive = predict_probabilities(net, x, samples=1100, device=CPU, seed=8, mode="naive")
    np.testing.assert_allclose(long, naive, rtol=0, atol=1e-5)


def test_mask_blocks_past_the_cache_bound_are_redrawn_identically(model: SmallCNN) -> None:
    """A cache bound of one block keeps the first block and redraws the others: the masks equal
    those of an unbounded cache, and the kept bytes never exceed the bound."""
    shape = (128,)
    block_bytes = _BLOCK_PASSES * 128 * 4
    unbounded = SharedMasks(model, 9)
    bounded = SharedMasks(model, 9, cache_bytes=block_bytes)
    for _ in range(2):  # a second sweep, as the next chunk of a stage would
        for t in (0, 1500, 2500, 10):
            torch.testing.assert_close(bounded.mask(1, t, shape, CPU), unbounded.mask(1, t, shape, CPU), rtol=0, atol=0)
    assert bounded.cached_bytes == block_bytes  # block 0 kept, blocks 1 and 2 redrawn
    assert unbounded.cached_bytes == 3 * block_bytes
