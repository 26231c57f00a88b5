"""Trial 15 F17: after a round with 6 picks and 2 tasks still out from an earlier round, `run`
said "Heatmaps of the selected samples: 6 PNG files" while the round wrote 8 (the leftovers get
heatmaps too). The line counts every PNG and names the leftovers apart. Real SQLite rows."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from activelabel import cli
from activelabel.cli import heatmap_files_line
from activelabel.storage import open_engine
from activelabel.storage.database import session_scope
from activelabel.storage.models import Campaign, Heatmap, Round, RoundKind, Sample, SampleSplit, Selection


def test_heatmap_files_line_counts_the_tasks_still_out() -> None:
    folder = Path("/h/left")
    assert heatmap_files_line(6, 0, folder) == "Heatmaps of the selected samples: 6 PNG files in /h/left"
    assert heatmap_files_line(6, 2, folder) == (
        "Heatmaps: 8 PNG files in /h/left (6 selected, 2 for tasks still out from an earlier round)")
    assert heatmap_files_line(1, 1, folder) == (
        "Heatmaps: 2 PNG files in /h/left (1 selected, 1 for task still out from an earlier round)")
    assert heatmap_files_line(1, 0, folder) == "Heatmaps of the selected samples: 1 PNG file in /h/left"


def test_run_counts_the_heatmaps_of_tasks_still_out(tmp_path: Path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'heat.db'}"
    engine = open_engine(url)
    folder = tmp_path / "activelabel-heatmaps" / "left"
    with session_scope(engine) as session:
        campaign = Campaign(name="left", task_kind="segmentation", labels=["bg", "fg"], strategy="entropy",
                            dataset="own", config={})
        session.add(campaign)
        session.flush()
        samples = [Sample(campaign_id=campaign.id, uri=f"img_{i}.png", content_hash=str(i), split=SampleSplit.pool)
                   for i in range(8)]
        session.add_all(samples)
        earlier = Round(campaign_id=campaign.id, index=2, strategy="random", kind=RoundKind.active)
        third = Round(campaign_id=campaign.id, index=3, strategy="entropy", kind=RoundKind.active)
        session.add_all([earlier, third])
        session.flush()
        for rank, sample in enumerate(samples[:2]):  # round 2's tasks, still out at round 3
            session.add(Selection(campaign_id=campaign.id, round_id=earlier.id, sample_id=sample.id, rank=rank,
                                  score=0.0, predicted_label="", confidence=0.0))
        for rank, sample in enumerate(samples[2:]):
            session.add(Selection(campaign_id=campaign.id, round_id=third.id, sample_id=sample.id, rank=rank,
                                  score=1.0 - rank / 10, predicted_label="", confidence=0.0))
        for sample in samples:  # round 3 drew all 8
            session.add(Heatmap(round_id=third.id, sample_id=sample.id, map_name="entropy",
                                path=str(folder / "round-003" / f"{Path(sample.uri).stem}_round-003.png"),
                                mean=0.1, max=0.9, top_q_mean=0.5, q=0.1))
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=400))
    cli._print_heatmaps("left", url)
    lines = out.getvalue().splitlines()
    assert f"Heatmaps: 8 PNG files in {folder} (6 selected, 2 for tasks still out from an earlier round)" in lines
    assert lines[-1] == (f"  round 3, most uncertain: {folder / 'round-003' / 'img_2_round-003.png'} "
                         "(entropy, top-q mean 0.500)")
