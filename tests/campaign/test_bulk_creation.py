"""Campaign creation in bulk on real SQLite and real PostgreSQL: samples written by COPY /
executemany, copies linked in one UPDATE, file hashes computed on worker processes.

PostgreSQL runs only when ``ACTIVELABEL_TEST_POSTGRES_URL`` is set; each test gets its own
throwaway schema (``search_path``), dropped afterwards, so other tests' tables are untouched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from activelabel.campaign import prepare_campaign
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import clear_cache
from activelabel.pipeline.identity import file_identities
from activelabel.pipeline.sources import file_signature
from activelabel.storage import Campaign, Sample, SampleSplit, session_scope
from activelabel.storage.bulk import write_samples
from tests_support_postgres import sqlite_or_postgres_engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request, tmp_path) -> Iterator[Engine]:
    with sqlite_or_postgres_engine(request.param, tmp_path / "al.db", "al_create_test") as engine:
        yield engine


@pytest.fixture(autouse=True)
def _fresh_data_cache():
    clear_cache()
    yield
    clear_cache()


def test_write_samples_round_trips_rows_and_refuses_a_uri_twice(backend) -> None:
    with session_scope(backend) as session:
        campaign = Campaign(name="bulk", labels=["a"], strategy="bald", dataset="d", config={})
        session.add(campaign)
        session.flush()
        campaign_id = campaign.id
        rows = [(campaign_id, f"pool.npy#{i}", f"{i:064x}", SampleSplit.pool if i % 3 else "test",
                 None if i % 2 else 10 * i, None if i % 2 else 2**62 + i) for i in range(5_000)]
        assert write_samples(session, rows) == 5_000
    with session_scope(backend) as session:
        stored = session.execute(select(Sample.uri, Sample.content_hash, Sample.split, Sample.size_bytes,
                                        Sample.mtime_ns, Sample.duplicate_of).order_by(Sample.id)).all()
    assert [tuple(r) for r in stored] == [
        (f"pool.npy#{i}", f"{i:064x}", SampleSplit.pool if i % 3 else SampleSplit.test,
         None if i % 2 else 10 * i, None if i % 2 else 2**62 + i, None) for i in range(5_000)]
    with pytest.raises(IntegrityError):
        with session_scope(backend) as session:
            write_samples(session, [(campaign_id, "fresh", "0" * 64, "pool", None, None),
                                    (campaign_id, "pool.npy#7", "0" * 64, "pool", None, None)])
    with session_scope(backend) as session:  # the failed batch left nothing behind
        assert session.scalar(select(Sample.id).where(Sample.uri == "fresh")) is None


def test_an_npy_campaign_is_created_in_bulk_with_copies_linked(backend, tmp_path) -> None:
    rows = np.random.default_rng(0).integers(0, 256, (3_000, 8, 8), dtype=np.uint8)
    rows[2_999] = rows[10]
    rows[1_500] = rows[10]
    np.save(tmp_path / "pool.npy", rows)
    config = CampaignConfig(name="big", dataset="files", data_pool=str(tmp_path / "pool.npy"),
                            labels=("a", "b"), annotator="labelstudio", evaluation_size=0, image_size=8)
    campaign_id = prepare_campaign(backend, config)
    with session_scope(backend) as session:
        samples = {s.uri: s for s in session.scalars(select(Sample).where(Sample.campaign_id == campaign_id))}
    assert len(samples) == 3_000
    assert all(s.content_hash == hashlib.sha256(rows[int(u.split("#")[1])].tobytes()).hexdigest()
               for u, s in samples.items())
    first = samples["pool.npy#10"].id
    assert {u for u, s in samples.items() if s.duplicate_of is not None} == {"pool.npy#1500", "pool.npy#2999"}
    assert samples["pool.npy#1500"].duplicate_of == first == samples["pool.npy#2999"].duplicate_of
    assert prepare_campaign(backend, config) == campaign_id  # found again, nothing written twice


def test_a_file_campaign_hashes_files_on_worker_processes(backend, tmp_path) -> None:
    images = tmp_path / "images"
    pixels = np.random.default_rng(1).integers(0, 256, (1_200, 6, 6), dtype=np.uint8)
    pixels[1_100] = pixels[3]
    for i, row in enumerate(pixels):
        (images / f"{i % 7}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(row).save(images / f"{i % 7}" / f"{i:05d}.png")
    paths = sorted(images.rglob("*.png"))
    found = file_identities(paths, workers=2)  # 1,200 files: three tasks over two processes
    assert found == [(hashlib.sha256(p.read_bytes()).hexdigest(), file_signature(p)) for p in paths]

    config = CampaignConfig(name="files", dataset="files", data_pool=str(images), labels=("a", "b"),
                            annotator="labelstudio", evaluation_size=0, image_size=6)
    campaign_id = prepare_campaign(backend, config)
    with session_scope(backend) as session:
        samples = {s.uri: s for s in session.scalars(select(Sample).where(Sample.campaign_id == campaign_id))}
    assert len(samples) == 1_200
    for path in paths[::97]:
        uri = path.relative_to(images).as_posix()
        assert samples[uri].content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
        assert (samples[uri].size_bytes, samples[uri].mtime_ns) == file_signature(path)
    # The first URI in sorted order stands for its copies.
    assert samples["3/00003.png"].duplicate_of == samples["1/01100.png"].id
    assert sum(s.duplicate_of is not None for s in samples.values()) == 1
