"""A segmentation campaign's ``data.image_size`` may change until a round trains a model
(trial 15, F3).

An older version accepted ``image_size = 30``, which ``unet_small`` cannot take (sides divisible
by 4): the campaign ran its cold-start round, failed at its first training round, and the
settings check then refused the size the error advised, so it could never train. Here the
campaign is created as such a version left it (its stored settings written directly), its
cold-start round painted and its training round failed by real Prefect runs; then ``activelabel
run`` with ``image_size = 28`` says the change on one line and trains at 28x28, and a later
change, once a round has trained a model, is refused saying why.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from activelabel.campaign import prepare_campaign
from activelabel.campaign.file import load_campaign_file
from activelabel.flows import campaign_flow
from activelabel.pipeline.shapes import SHAPE_CLASSES, make_shapes, write_segmentation_folder
from activelabel.storage import Campaign, ModelCheckpoint, Round, RoundKind, RoundStatus, open_engine, session_scope
from test_cli import run_cli

POOL, TEST, BATCH, FULL = 24, 6, 4, 32

CAMPAIGN = f"""
[campaign]
name = "resized"
task = "segmentation"
strategy = "entropy"
rounds = ROUNDS
batch_size = {BATCH}
min_labels_to_train = 4
mc_samples = 2
epochs = 1
device = "cpu"

[data]
pool = "pool/images"
test = "test/images"
labels = {list(SHAPE_CLASSES)!r}
image_size = SIZE
channels = 3
workers = 0

[annotator]
kind = "simulated"
truth = "pool/masks"

[segmentation]
test_masks = "test/masks"

[database]
url = "sqlite:///al.db"
""".replace("'", '"')


def _write(root: Path, size: int, rounds: int) -> None:
    (root / "campaign.toml").write_text(CAMPAIGN.replace("SIZE", str(size)).replace("ROUNDS", str(rounds)))


def _rounds(engine) -> list[tuple]:
    with session_scope(engine) as session:
        return [tuple(r) for r in session.execute(
            select(Round.index, Round.kind, Round.status, Round.failed_step).order_by(Round.index))]


def _stored_size(engine) -> int:
    with session_scope(engine) as session:
        return session.scalars(select(Campaign)).one().config["image_size"]


def test_image_size_changes_until_a_model_is_trained_then_is_refused_saying_why(tmp_path) -> None:
    write_segmentation_folder(make_shapes(POOL, seed=5, size=FULL), tmp_path / "pool")
    write_segmentation_folder(make_shapes(TEST, seed=5, size=FULL, start=POOL), tmp_path / "test")
    url = f"sqlite:///{tmp_path / 'al.db'}"
    engine = open_engine(url)

    # As an older version left it: created (size 28 passes today's check), stored with 30.
    _write(tmp_path, 28, 2)
    config, _ = load_campaign_file(tmp_path / "campaign.toml")
    prepare_campaign(engine, config)
    with session_scope(engine) as session:
        campaign = session.scalars(select(Campaign)).one()
        campaign.config = {**campaign.config, "image_size": 30}
    # Its cold-start round is painted; its first training round fails on the size.
    assert [s.status for s in campaign_flow("resized", 1, database_url=url)] == ["complete"]
    with pytest.raises(Exception, match="divisible by 4"):
        campaign_flow("resized", 2, database_url=url)
    assert _rounds(engine) == [(1, RoundKind.cold_start, RoundStatus.complete, None),
                               (2, RoundKind.active, RoundStatus.failed, RoundStatus.training)]

    # The file still says 30: refused before anything runs, with the sizes that fit.
    _write(tmp_path, 30, 2)
    refused = run_cli("run", "campaign.toml", cwd=tmp_path)
    assert refused.returncode == 1, refused.stderr[-3000:]
    assert "data.image_size = 30 does not fit unet_small, which needs image sides divisible by 4; " \
           "set data.image_size to 28 or 32" in " ".join(refused.stderr.split()), refused.stderr[-3000:]

    # As advised, 28: accepted, said on one line; the failed round resumes and trains at 28x28.
    _write(tmp_path, 28, 2)
    resized = run_cli("run", "campaign.toml", cwd=tmp_path)
    assert resized.returncode == 0, resized.stderr[-3000:]
    assert ("Campaign 'resized': data.image_size 30 -> 28: images are resized to 28x28 pixels from now on "
            "(no round has trained a model yet; the stored masks are kept at full size)") in resized.stderr.splitlines()
    assert _stored_size(engine) == 28
    assert _rounds(engine) == [(1, RoundKind.cold_start, RoundStatus.complete, None),
                               (2, RoundKind.active, RoundStatus.complete, None)]
    with session_scope(engine) as session:
        trained = session.scalar(select(Round).where(Round.index == 2))
        assert trained.segmentation_metrics["pixels"] == TEST * 28 * 28  # measured at the new size
        assert session.scalar(select(ModelCheckpoint.id).where(ModelCheckpoint.round_id == trained.id)) is not None

    # Round 2 trained a model at 28x28: another size is refused, saying why; nothing changes.
    _write(tmp_path, 32, 3)
    fixed = run_cli("run", "campaign.toml", cwd=tmp_path)
    assert fixed.returncode == 1, fixed.stderr[-3000:]
    line = " ".join(fixed.stderr.split())
    assert (f"{Path('campaign.toml')}: campaign 'resized' already exists with other settings (data.image_size 28 -> 32); "
            "these settings are fixed once a campaign is created (data.image_size of a segmentation campaign can "
            "change only until a round trains a model, and round 2 trained one on 28x28 images): put back what it "
            "was created with (data.image_size = 28)") in line, fixed.stderr[-3000:]
    assert _stored_size(engine) == 28 and len(_rounds(engine)) == 2


def test_a_classification_campaign_keeps_its_image_size_fixed(tmp_path) -> None:
    from activelabel.campaign import CampaignConfig
    from activelabel.campaign.image_size_change import image_size_verdict
    from activelabel.errors import SettingsChangedError

    engine = open_engine(f"sqlite:///{tmp_path / 'c.db'}")
    stored = CampaignConfig(name="cls", image_size=28)
    verdict = image_size_verdict(engine, 1, stored, CampaignConfig(name="cls", image_size=32))
    assert verdict.may_change == frozenset() and verdict.line == ""
    with pytest.raises(SettingsChangedError) as refused:
        CampaignConfig(name="cls", image_size=32).check_compatible(stored, may_change=verdict.may_change,
                                                                   why=verdict.why)
    assert str(refused.value) == ("campaign 'cls' already exists with other settings (image_size 28 -> 32); "
                                  "pick another --campaign name or a fresh --database-url")
