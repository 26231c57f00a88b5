"""`activelabel demo --task segmentation` as a user runs it: rounds, mIoU and heatmap paths printed;
`export --model` writes its U-Net as a weights file a new campaign accepts."""

from __future__ import annotations

import io
import re
from pathlib import Path

import torch
from PIL import Image
from sqlalchemy import select

from activelabel.pipeline.segmentation_model import (SegmentationSpec, build_segmentation_model,
                                                     load_segmentation_weights)
from activelabel.storage import Heatmap, ModelCheckpoint, Round, open_engine, session_scope
from test_cli import run_cli


def test_segmentation_demo_prints_miou_and_where_the_heatmaps_are(tmp_path: Path) -> None:
    result = run_cli("demo", "--task", "segmentation", "--dataset", "shapes?n=60&size=32", "--rounds", "1",
                     "--batch-size", "6", "--initial-labeled", "8", "--mc-samples", "2", "--device", "cpu",
                     "--database-url", f"sqlite:///{tmp_path}/al.db", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Campaign demo-seg-bald-seed0" in result.stdout
    assert re.search(r"round 1: mIoU 0\.\d{3} \(background 0\.\d\d, disc ", result.stdout)
    folder = tmp_path / "activelabel-heatmaps" / "demo-seg-bald-seed0"
    assert f"Heatmaps of the selected samples: 6 PNG files in {folder}" in result.stdout
    printed = re.search(r"round 1, most uncertain: (\S+\.png) \(bald, top-q mean (\d\.\d{3})\)", result.stdout)
    assert printed and Path(printed.group(1)).parent == folder / "round-001"
    with Image.open(printed.group(1)) as png:
        assert png.format == "PNG"
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    with session_scope(engine) as session:
        (rnd,) = session.scalars(select(Round)).all()
        assert rnd.labeled_count == 8 and rnd.segmentation_metrics["miou"] > 0.3
        rows = session.scalars(select(Heatmap)).all()
        assert sorted(Path(h.path).name for h in rows) == sorted(p.name for p in (folder / "round-001").glob("*.png"))
        assert f"{max(h.top_q_mean for h in rows):.3f}" == printed.group(2)
        stored = session.scalars(select(ModelCheckpoint)).one()
        stored_state = torch.load(io.BytesIO(stored.state), weights_only=True)

    # `export --model` writes the round's U-Net as a file a new campaign's [model] weights takes.
    exported = run_cli("export", "demo-seg-bald-seed0", "--model", "unet.pt",
                       "--database-url", f"sqlite:///{tmp_path}/al.db", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-2000:]
    payload = torch.load(tmp_path / "unet.pt", weights_only=True)
    assert payload["labels"][0] == "background" and payload["campaign"] == "demo-seg-bald-seed0"
    assert payload["state_dict"].keys() == stored_state.keys()
    assert all(torch.equal(payload["state_dict"][k], v) for k, v in stored_state.items())
    fresh = build_segmentation_model(SegmentationSpec.from_dict(payload["architecture"]))
    load_segmentation_weights(fresh, tmp_path / "unet.pt")
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in stored_state.items())
