"""Peak memory of a round's scoring does not grow with the pool beyond its per-sample rows.

Each pool is scored by the round's own ``score_step`` in a fresh child process, which reports
its peak RSS (``resource.getrusage``, ``ru_maxrss``). A pool ten times larger may only add the
per-sample columns (ids, URIs and scores), never an array of the pool's pixels or
probabilities. A bound, not a timing: it holds on a busy machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from activelabel.campaign import prepare_campaign
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import clear_cache
from activelabel.storage import open_engine

SMALL, LARGE = 2_000, 20_000
# 18,000 more samples may add at most this much peak RSS: ~3.7 KB per sample. A round keeps
# ~160 bytes per sample (the pool's id and URI columns and its score columns): measured +9 MB,
# 732 -> 741 MB (2026-11-29; +41 MB when it held a row object and a score tuple per sample);
# the rest of the bound is the allocator's noise on a busy machine. Holding the pool's
# pixels as float32 (9.2 KB per 48x48 image) would add ~166 MB; keeping the .npy's mapped pages
# resident ~41 MB more.
# The refinement's passes are fixed (refine_passes = 20) for both pools: left unset they grow
# with the pool up to 1,000 (capped at the first stage's image-passes), and the stage's
# block-drawn dropout masks (passes x mask size: 75 MB for 1,000 passes of 32x24x24) would be
# measured as if the pool's size had cost them.
# mc_samples = 2 (the fewest a BALD round takes): what the bound guards against (pixels, mapped
# pages, per-sample objects) does not grow with T, and T = 5 cost ~1.5x the test's time.
MARGIN_MB = 64
IMAGE = 48

_CHILD = r"""
import json, resource, sys
import torch
from activelabel.campaign import steps
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.model_settings import model_spec
from activelabel.pipeline.checkpoint import serialize_weights
from activelabel.pipeline.model import build_model
from activelabel.storage import Campaign, ModelCheckpoint, Round, RoundKind, RoundStatus, open_engine, session_scope

engine = open_engine(sys.argv[1])
with session_scope(engine) as session:
    campaign = session.query(Campaign).one()
    config = CampaignConfig.from_dict(campaign.config)
    torch.manual_seed(0)
    spec = model_spec(config, 1, len(campaign.labels))
    rnd = Round(campaign_id=campaign.id, index=1, strategy=campaign.strategy, kind=RoundKind.active,
                status=RoundStatus.scoring, timings={}, model_version="m")
    session.add(rnd)
    session.flush()
    session.add(ModelCheckpoint(round_id=rnd.id, member=0, version="m", architecture=spec.to_dict(),
                                state=serialize_weights(build_model(spec))))
    round_id = rnd.id
steps.score_step(engine, round_id)
with session_scope(engine) as session:
    scored = session.get(Round, round_id).pool_count
print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "scored": scored}))
"""


def _peak_scoring(tmp_path: Path, count: int, runs: int = 2) -> dict:
    """The lowest peak RSS of ``runs`` scorings of a ``count`` pool, each in a fresh process: the
    allocator's noise only adds (a 2,000 pool once peaked 37 MB above a 20,000 one), so the
    lowest of two is the steadier measure of what scoring needs."""
    database = _pool_campaign(tmp_path, count)
    peaks = []
    for run in range(runs):  # each on a copy of the prepared database: the child adds round 1
        copy = database.with_name(f"run{run}-{database.name}")
        shutil.copyfile(database, copy)
        peaks.append(_peak_of_one_scoring(f"sqlite:///{copy}"))
    return min(peaks, key=lambda r: r["peak_mb"])


def _pool_campaign(tmp_path: Path, count: int) -> Path:
    """A campaign over a ``count``-image .npy pool; its SQLite database file."""
    folder = tmp_path / str(count)
    folder.mkdir()
    pixels = np.random.default_rng(count).integers(0, 256, (count, IMAGE, IMAGE), dtype=np.uint8)
    np.save(folder / "pool.npy", pixels)
    url = f"sqlite:///{folder / 'al.db'}"
    config = CampaignConfig(name="memory", dataset="files", data_pool=str(folder / "pool.npy"),
                            labels=tuple("0123456789"), annotator="labelstudio", evaluation_size=0,
                            batch_size=10, mc_samples=2, image_size=IMAGE, loader_workers=0, device="cpu",
                            calibrate=False, refine_passes=20)
    clear_cache()
    engine = open_engine(url)
    prepare_campaign(engine, config)
    engine.dispose()  # the last connection closed: the file holds everything, ready to copy
    return folder / "al.db"


def _peak_of_one_scoring(url: str) -> dict:
    """Round 1's scoring of the campaign at ``url`` in a fresh process: its peak RSS and count."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # Through a small launcher: a child forked straight from pytest would start with pytest's
    # resident size as its ru_maxrss (Linux keeps the high-water mark across exec), which would
    # hide any growth.
    launcher = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-S", "-c", launcher, sys.executable, "-c", _CHILD, url],
                          capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_ten_times_the_pool_adds_only_per_sample_rows_to_peak_memory(tmp_path) -> None:
    small = _peak_scoring(tmp_path, SMALL)
    large = _peak_scoring(tmp_path, LARGE)
    assert (small["scored"], large["scored"]) == (SMALL, LARGE)
    growth = large["peak_mb"] - small["peak_mb"]
    print(f"peak RSS scoring {SMALL}: {small['peak_mb']:.0f} MB, {LARGE}: {large['peak_mb']:.0f} MB")
    assert growth < MARGIN_MB, f"peak RSS {small['peak_mb']:.0f} MB -> {large['peak_mb']:.0f} MB (+{growth:.0f} MB)"
