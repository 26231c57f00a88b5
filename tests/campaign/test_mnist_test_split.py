"""MNIST's official test images (t10k) as a campaign's test split: ``mnist:/dir?test=t10k``.

Gal, Islam & Ghahramani 2017 measure on the 10,000 MNIST test images; without the option a
campaign draws a seeded ``test_fraction`` of the training images (today's default, kept).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import campaign_data, clear_cache
from activelabel.campaign.setup import check_dataset, plan_campaign, prepare_campaign
from activelabel.errors import DatasetError
from activelabel.pipeline.datasets import load_dataset
from activelabel.storage import Round, Sample, SampleSplit, Selection, open_engine, session_scope
from tests_support_rounds import run_rounds

REAL_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_mnist = pytest.mark.skipif(
    not (REAL_MNIST / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file(),
    reason=f"real MNIST t10k files not found under {REAL_MNIST} (shared data not mounted)",
)
TRAIN, TEST = 200, 30


@pytest.fixture(autouse=True)
def _fresh_data_cache():
    clear_cache()
    load_dataset.cache_clear()
    yield
    clear_cache()
    load_dataset.cache_clear()


def _write_idx(folder: Path, stem: str, n: int, seed: int) -> np.ndarray:
    """IDX3/IDX1 files ``<stem>-images-idx3-ubyte`` and ``<stem>-labels-idx1-ubyte``; returns
    the labels (every class present)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(labels)
    (folder / f"{stem}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + pixels.tobytes())
    (folder / f"{stem}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
    return labels


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "mnist"
    folder.mkdir()
    _write_idx(folder, "train", TRAIN, seed=1)
    _write_idx(folder, "t10k", TEST, seed=2)
    return folder


def _config(dataset: str, **more) -> CampaignConfig:
    return CampaignConfig(name="t10k", dataset=dataset, rounds=3, batch_size=10, initial_labeled=20,
                          initial_balanced=True, epochs=2, mc_samples=3, calibrate=False, device="cpu", **more)


def _splits(engine) -> dict[str, str]:
    with session_scope(engine) as session:
        return {s.uri: s.split.value for s in session.scalars(select(Sample))}


def test_the_spec_adds_the_t10k_images_as_the_given_test_split(mnist_dir: Path) -> None:
    data = load_dataset(f"mnist:{mnist_dir}?limit=150&test=t10k")
    assert len(data) == 150 + TEST
    assert data.test_uris == tuple(f"mnist/test/{i}" for i in range(TEST))
    assert data.uris[:150] == [f"mnist/train/{i}" for i in range(150)]
    # The t10k rows hold the t10k pixels, not a copy of training images.
    rows = data.indices_of(["mnist/test/0", "mnist/test/29"])
    raw = np.frombuffer((mnist_dir / "t10k-images-idx3-ubyte").read_bytes(), np.uint8, offset=16).reshape(-1, 28, 28)
    np.testing.assert_array_equal(data.images[rows, 0] * 255.0, raw[[0, 29]].astype(np.float32))
    with pytest.raises(DatasetError, match="test=t10k"):
        load_dataset(f"mnist:{mnist_dir}?test=val")


def test_a_t10k_campaign_tests_on_exactly_the_t10k_images_and_never_selects_them(mnist_dir: Path, tmp_path: Path) -> None:
    config = _config(f"mnist:{mnist_dir}?test=t10k")
    check_dataset(config)
    engine = open_engine(f"sqlite:///{tmp_path / 'c.db'}")
    campaign_id = prepare_campaign(engine, config)
    splits = _splits(engine)
    assert sorted(u for u, s in splits.items() if s == "test") == sorted(f"mnist/test/{i}" for i in range(TEST))
    assert sorted(u for u, s in splits.items() if s == "pool") == sorted(f"mnist/train/{i}" for i in range(TRAIN))
    assert len(splits) == TRAIN + TEST  # test_fraction drew nothing from the training images

    run_rounds(engine, campaign_id, 2)
    with session_scope(engine) as session:
        picked = session.execute(select(Sample.uri).join(Selection, Selection.sample_id == Sample.id)).scalars().all()
        accuracies = [r.test_accuracy for r in session.scalars(select(Round).order_by(Round.index))]
    assert len(picked) == 20 and all(u.startswith("mnist/train/") for u in picked)
    # Each round was measured on the 30 t10k images: accuracy is a whole number of 30ths.
    assert all(a is not None and abs(a * TEST - round(a * TEST)) < 1e-6 for a in accuracies)


def test_without_the_option_the_test_split_is_still_drawn_from_the_training_images(mnist_dir: Path, tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'd.db'}")
    prepare_campaign(engine, _config(f"mnist:{mnist_dir}"))
    splits = _splits(engine)
    test = [u for u, s in splits.items() if s == "test"]
    assert len(splits) == TRAIN and len(test) == round(TRAIN * 0.2)
    assert all(u.startswith("mnist/train/") for u in splits)


@needs_mnist
def test_real_mnist_the_test_split_is_the_10000_t10k_images() -> None:
    config = _config(f"mnist:{REAL_MNIST}?limit=2000&test=t10k")
    data = campaign_data(config)
    plan = plan_campaign(config, data)
    test = sorted(u for u, s in plan.split_of.items() if s == SampleSplit.test)
    pool = sorted(u for u, s in plan.split_of.items() if s == SampleSplit.pool)
    assert test == sorted(f"mnist/test/{i}" for i in range(10_000))
    assert pool == sorted(f"mnist/train/{i}" for i in range(2000))
    assert plan.duplicate_of == {}  # no t10k image is byte-identical to a training image
    assert len(plan.seeds) == 20 and set(plan.seeds) <= set(pool)
    assert sorted(plan.seeds.values()) == sorted([str(c) for c in range(10)] * 2)  # balanced
