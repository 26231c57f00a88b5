"""A campaign whose pool is one .npy array: creation (row URIs, row hashes, copies), the
evaluation, cold-start and active rounds on memory-mapped rows, and a changed row noticed on the
next run. Real files, real SQLite, the round's own steps."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from sqlalchemy import select

from activelabel.campaign import campaign_summaries, prepare_campaign
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import campaign_data, clear_cache
from activelabel.campaign.integrity import find_changes
from activelabel.pipeline.memmap import MemmapStore
from activelabel.storage import Sample, SampleSplit, Score, open_engine, session_scope
from tests_support_rounds import run_rounds

LABELS = [str(d) for d in range(10)]


@pytest.fixture(autouse=True)
def _fresh_data_cache():
    clear_cache()
    yield
    clear_cache()


def _digits_pool(tmp_path, count: int = 90):
    """``count`` digits as a uint8 [N, 16, 16] array (row 5 copied into row 6) and a truth
    manifest naming rows as ``pool.npy#<row>``."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = np.random.default_rng(0).choice(len(digits.target), size=count, replace=False)
    pixels = np.stack([
        np.asarray(Image.fromarray((digits.images[r] * 255 / 16).astype(np.uint8)).resize((16, 16), Image.NEAREST))
        for r in rows
    ])
    pixels[6] = pixels[5]
    labels = [str(digits.target[r]) for r in rows]
    labels[6] = labels[5]
    np.save(tmp_path / "pool.npy", pixels)
    (tmp_path / "truth.csv").write_text("path,label\n" + "".join(f"pool.npy#{i},{v}\n" for i, v in enumerate(labels)))
    return pixels, labels


def _config(tmp_path, **extra) -> CampaignConfig:
    settings = dict(name="npy", dataset="files", data_pool=str(tmp_path / "pool.npy"), labels=tuple(LABELS),
                    truth=str(tmp_path / "truth.csv"), evaluation_size=10, batch_size=10, epochs=2, mc_samples=3,
                    image_size=16)
    return CampaignConfig(**{**settings, **extra})


def test_npy_pool_campaign_runs_its_rounds_on_rows(tmp_path) -> None:
    pixels, labels = _digits_pool(tmp_path)
    config = _config(tmp_path, loader_workers=1)
    assert isinstance(campaign_data(config).store, MemmapStore)
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, config)
    with session_scope(engine) as session:
        samples = {s.uri: s for s in session.scalars(select(Sample).where(Sample.campaign_id == campaign_id))}
    assert set(samples) == {f"pool.npy#{i}" for i in range(90)}
    for i in (0, 5, 89):
        assert samples[f"pool.npy#{i}"].content_hash == hashlib.sha256(pixels[i].tobytes()).hexdigest()
    assert samples["pool.npy#6"].duplicate_of == samples["pool.npy#5"].id  # identical rows are one sample
    stat = os.stat(tmp_path / "pool.npy")
    assert (samples["pool.npy#0"].size_bytes, samples["pool.npy#0"].mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    assert sum(s.split == SampleSplit.evaluation for s in samples.values()) == 10

    run_rounds(engine, campaign_id, 4)
    summaries = campaign_summaries(engine, "npy")
    assert [s.kind for s in summaries] == ["evaluation", "cold_start", "active", "active"]
    assert [s.labeled for s in summaries] == [0, 0, 10, 20]
    assert summaries[3].test_accuracy is not None
    with session_scope(engine) as session:
        scored = set(session.scalars(select(Score.sample_id)))
    assert len(scored) > 60 and samples["pool.npy#6"].id not in scored  # copies are never scored


def test_a_changed_row_is_noticed_and_an_untouched_array_costs_one_stat(tmp_path) -> None:
    pixels, _ = _digits_pool(tmp_path, count=40)
    config = _config(tmp_path, evaluation_size=0)
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, config)
    store = campaign_data(config).store
    assert find_changes(engine, campaign_id, store, config) == []
    pixels[12] = 255 - pixels[12]
    np.save(tmp_path / "pool.npy", pixels)
    store = MemmapStore(tmp_path, size=16, channels=1)  # a new run maps the new file
    changes = find_changes(engine, campaign_id, store, config)
    assert [c.uri for c in changes] == ["pool.npy#12"]
    assert changes[0].content_hash == hashlib.sha256(pixels[12].tobytes()).hexdigest()
