"""`export --model` of a segmentation ensemble writes every U-Net and the round's per-pixel
temperature; a campaign's ``[model] weights`` refuses that file and takes one member saved alone.

One real round on the generated shapes dataset (2 U-Nets of 3 fixed epochs, 24 seed masks so
the round holds images out and fits a temperature; SQLite, the round's own steps). The
single-U-Net file is tested as before in tests/cli/test_cli_segmentation.py.
"""

from __future__ import annotations

import io

import pytest
import torch
from sqlalchemy import select

from activelabel.campaign import prepare_campaign
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import clear_cache
from activelabel.campaign.export import export_model
from activelabel.campaign.segmentation_round import load_segmenter
from activelabel.errors import WeightsFileError
from activelabel.pipeline.segmentation_model import (
    SegmentationSpec,
    build_segmentation_model,
    load_segmentation_weights,
)
from activelabel.storage import ModelCheckpoint, Round, open_engine, session_scope
from tests_support_rounds import run_round

MEMBERS, SEEDS = 2, 24


def test_a_segmentation_ensemble_exports_every_unet_and_its_temperature(tmp_path) -> None:
    clear_cache()
    config = CampaignConfig(
        name="seg-ens-export", task="segmentation", dataset="shapes?n=60&size=32", strategy="entropy",
        uncertainty="ensemble", ensemble_size=MEMBERS, initial_labeled=SEEDS, min_labels_to_train=SEEDS,
        batch_size=4, epochs=3, fixed_epochs=True, test_fraction=0.25, rounds=1, device="cpu",
        heatmap_dir=str(tmp_path / "heatmaps"), calibrate=True,
    )
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    run_round(engine, prepare_campaign(engine, config))
    with session_scope(engine) as session:
        rnd = session.scalar(select(Round).where(Round.index == 1))
        checkpoints = list(session.scalars(select(ModelCheckpoint).where(ModelCheckpoint.round_id == rnd.id)
                                           .order_by(ModelCheckpoint.member)))
        session.expunge_all()
    assert [c.member for c in checkpoints] == [0, 1] and rnd.calibration is not None

    exported = export_model(engine, "seg-ens-export", tmp_path / "unets.pt")
    assert (exported.version, exported.members) == (rnd.model_version, MEMBERS)
    payload = torch.load(tmp_path / "unets.pt", weights_only=True)
    assert "state_dict" not in payload and len(payload["members"]) == MEMBERS
    assert (payload["campaign"], payload["version"], payload["round"]) == (
        "seg-ens-export", rnd.model_version, 1)
    assert payload["labels"][0] == "background"
    assert payload["calibration"] == {"temperature": rnd.calibration["temperature"],
                                      "mixture_temperature": rnd.calibration["mixture_temperature"],
                                      "predictor": rnd.calibration["predictor"]}
    for state, checkpoint in zip(payload["members"], checkpoints):
        stored = torch.load(io.BytesIO(checkpoint.state), weights_only=True)
        assert state.keys() == stored.keys() and all(torch.equal(state[k], v) for k, v in stored.items())

    # Each member rebuilt from the file's architecture predicts what the stored member predicts.
    channels = payload["architecture"]["in_channels"]
    x = torch.rand(3, channels, 32, 32, generator=torch.Generator().manual_seed(0))
    for state, checkpoint in zip(payload["members"], checkpoints):
        net = build_segmentation_model(SegmentationSpec.from_dict(payload["architecture"]))
        net.load_state_dict(state)
        with torch.no_grad():
            assert torch.equal(net.eval()(x), load_segmenter(checkpoint, torch.device("cpu"))(x))

    # [model] weights: the ensemble file is refused (it has no "state_dict"); one member saved alone is taken.
    fresh = build_segmentation_model(SegmentationSpec.from_dict(payload["architecture"]))
    with pytest.raises(WeightsFileError, match=r"an activelabel ensemble of 2 U-Nets.*torch.save\(f\['members'\]\[0\], 'member0.pt'\)"):
        load_segmentation_weights(fresh, tmp_path / "unets.pt")
    torch.save(payload["members"][1], tmp_path / "member1.pt")
    load_segmentation_weights(fresh, tmp_path / "member1.pt")
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in payload["members"][1].items())
