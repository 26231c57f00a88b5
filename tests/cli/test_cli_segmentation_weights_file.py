"""`activelabel run campaign.toml` for a segmentation campaign with [model] weights (issue 10):
a file that does not fit the U-Net is refused before anything is written, naming the file,
the first mismatching keys and what to do."""

from __future__ import annotations

from pathlib import Path

import torch

from activelabel.pipeline.segmentation_model import SegmentationSpec, build_segmentation_model
from test_cli import run_cli
from test_cli_segmentation_own_folders import CAMPAIGN, write_folders


def test_mismatched_weights_file_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    write_folders(tmp_path)
    # a built-in U-Net for 3 classes at width 8: the campaign's is 5 classes at width 16
    other = build_segmentation_model(SegmentationSpec(in_channels=3, num_classes=3, width=8))
    torch.save(other.state_dict(), tmp_path / "unet-w8.pt")
    model = '[model]\narchitecture = "unet_small"\nweights = "unet-w8.pt"\n\n'
    text = CAMPAIGN.replace("[annotator]", model + "[annotator]")
    (tmp_path / "campaign.toml").write_text(text)
    result = run_cli("run", "campaign.toml", cwd=tmp_path)
    assert result.returncode != 0
    said = " ".join((result.stdout + result.stderr).split())
    assert f"weights file {tmp_path / 'unet-w8.pt'} for unet_small (width 16, 3 channel(s), 5 classes)" in said
    assert "shape mismatch(es), file vs network (trunk.bottom.0.weight [32, 16, 3, 3] vs [64, 32, 3, 3]" in said
    assert "same architecture" in said
    assert not (tmp_path / "al.db").exists()
    assert not (tmp_path / "heatmaps").exists()
