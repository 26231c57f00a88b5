"""`activelabel compare experiment.toml` on your own image and mask folders (task = "segmentation",
the simulated annotator painting the pool's true masks), then `activelabel report experiment.toml`.

2 strategies × 1 seed × 1 round on 24 pool, 4 seed and 8 test images of generated shapes written
as folders; the experiment file holds a campaign file's [data], [model], [annotator] and
[segmentation] tables, read as a campaign file reads them (paths from the file's folder).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from report_tiny import ReportParser, run_cli

from activelabel.pipeline.cpus import usable_cpus
from activelabel.pipeline.shapes import SHAPE_CLASSES, make_shapes, write_segmentation_folder

STRATEGIES, BATCH = ("random", "entropy"), 4
LABELS = "[" + ", ".join(f'"{c}"' for c in SHAPE_CLASSES) + "]"
EXPERIMENT = f"""
[experiment]
name = "ownseg"
strategies = ["random", "entropy"]
seeds = 1

[campaign]
task = "segmentation"
rounds = 1
batch_size = {BATCH}
min_labels_to_train = 4
mc_samples = 2
epochs = 20
device = "cpu"

[model]
fixed_epochs = true

[data]
pool = "pool/images"
labeled = "seed/images"
test = "test/images"
labels = {LABELS}
image_size = 32
channels = 3
workers = 0

[annotator]
kind = "simulated"
truth = "pool/masks"

[segmentation]
labeled_masks = "seed/masks"
test_masks = "test/masks"
heatmap_dir = "heatmaps"
"""


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    root = tmp_path_factory.mktemp("own-seg-experiment")
    write_segmentation_folder(make_shapes(24, seed=3, size=32), root / "pool")
    write_segmentation_folder(make_shapes(4, seed=3, size=32, start=24), root / "seed")
    write_segmentation_folder(make_shapes(8, seed=3, size=32, start=28), root / "test")
    (root / "experiment.toml").write_text(EXPERIMENT, encoding="utf-8")
    result = run_cli("compare", "experiment.toml", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result


def _query(root: Path, sql: str, *params) -> list[tuple]:
    with sqlite3.connect(root / "activelabel.db") as connection:  # the default: next to the file
        return connection.execute(sql, params).fetchall()


def test_each_arm_is_a_segmentation_campaign_on_the_same_folders(ran):
    root, result = ran
    seeds, tests = {}, {}
    for strategy in STRATEGIES:
        name = f"ownseg-{strategy}-seed0"
        [(task, config)] = _query(root, "SELECT task_kind, config FROM campaign WHERE name = ?", name)
        config = json.loads(config)
        assert task == "segmentation" and config["dataset"] == "files"
        assert config["data_pool"] == str((root / "pool" / "images").resolve())
        assert config["heatmap_dir"] == str((root / "heatmaps" / name).resolve())  # a folder per arm
        seeds[strategy] = _query(root, "SELECT s.uri FROM annotation a JOIN sample s ON s.id = a.sample_id "
                                       "JOIN campaign c ON c.id = a.campaign_id WHERE c.name = ? AND a.source = "
                                       "'given' ORDER BY s.uri", name)
        tests[strategy] = _query(root, "SELECT s.uri FROM sample s JOIN campaign c ON c.id = s.campaign_id "
                                       "WHERE c.name = ? AND s.split = 'test' ORDER BY s.uri", name)
        paths = [Path(p) for (p,) in _query(root, "SELECT h.path FROM heatmap h JOIN round r ON r.id = h.round_id "
                                                  "JOIN campaign c ON c.id = r.campaign_id WHERE c.name = ?", name)]
        assert len(paths) == BATCH and all(p.parent == (root / "heatmaps" / name / "round-001").resolve()
                                           and p.is_file() for p in paths)
        # the simulated annotator painted each pick's true mask
        assert _query(root, "SELECT count(*) FROM annotation a JOIN campaign c ON c.id = a.campaign_id "
                            "WHERE c.name = ? AND a.source != 'given' AND a.mask IS NOT NULL", name) == [(BATCH,)]
    assert len(seeds["random"]) == 4 and seeds["random"] == seeds["entropy"]
    assert len(tests["random"]) == 8 and tests["random"] == tests["entropy"]
    assert "test mIoU (mean ± std)" in result.stdout
    # no workers setting: auto, one campaign per usable core, at most the 2 campaigns left
    at_once = min(2, usable_cpus())
    assert f"· {at_once} at once (auto: " in " ".join(result.stderr.split())

    again = run_cli("compare", "experiment.toml", cwd=root)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 campaigns already finished" in again.stderr


def test_the_report_of_the_experiment_file_reads_the_rounds(ran):
    root, _ = ran
    result = run_cli("report", "experiment.toml", "--target", "0.01", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    parser = ReportParser()
    parser.feed((root / "ownseg.html").read_text(encoding="utf-8"))
    assert len(parser.figures["learning-curve-miou"]) == 1
    for strategy, *cells in parser.tables["labels-to-target"][1:]:
        [(labeled, miou)] = _query(root, "SELECT r.labeled_count, json_extract(r.segmentation_metrics, '$.miou') "
                                         "FROM round r JOIN campaign c ON c.id = r.campaign_id WHERE c.name = ?",
                                   f"ownseg-{strategy}-seed0")
        assert cells == [f"{labeled} (seeds: {labeled})" if miou >= 0.01 else "not reached (seeds: —)"]
    assert [r[0] for r in parser.tables["pixel-share"][1:]] == ["random"] * 2 + ["entropy"] * 2


@pytest.mark.parametrize("change, says", [
    # a classification experiment on a campaign file's [data] pool: read it as a labeled dataset instead
    ('task = "segmentation"', 'an experiment reads your own classification images as a labeled dataset: instead '
                              'of [data] pool, set dataset ='),
    ('kind = "simulated"', "the oracle must know every answer"),
    ("image_size = 32", "unknown key 'data.image_sise'"),
])
def test_an_own_folder_experiment_that_cannot_run_is_refused_naming_what(tmp_path, change, says):
    replaced = {'task = "segmentation"': 'task = "classification"', 'kind = "simulated"': 'kind = "labelstudio"',
                "image_size = 32": "image_sise = 32"}[change]
    text = EXPERIMENT.replace(change, replaced)
    if change == 'task = "segmentation"':  # a classification campaign has no mask settings
        text = text.split("[segmentation]")[0]
    (tmp_path / "experiment.toml").write_text(text, encoding="utf-8")
    result = run_cli("compare", "experiment.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert says in " ".join(result.stderr.split())
    assert not (tmp_path / "activelabel.db").exists()  # refused before anything is written
