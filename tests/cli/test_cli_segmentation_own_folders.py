"""A segmentation campaign on a user's own folders (issue 10), as a user runs it:
unlabeled pool images, a small seed folder with palette-PNG masks, a test folder with
grayscale masks (with ignored pixels), `activelabel run campaign.toml` for two rounds,
then `activelabel export` writing the resolved masks as PNG files named by sample URI.

The simulated annotator paints the pool's true masks from a folder (annotator.truth).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from activelabel.campaign.file import load_campaign_file
from activelabel.errors import ConfigError
from activelabel.pipeline.masks import mask_from_png_bytes
from activelabel.pipeline.shapes import SHAPE_CLASSES, make_shapes, write_segmentation_folder
from activelabel.storage import (
    Annotation,
    Campaign,
    Heatmap,
    Round,
    RoundStatus,
    Sample,
    SampleSplit,
    open_engine,
    session_scope,
)
from test_cli import run_cli

POOL, SEEDS, TEST, BATCH, SIZE = 30, 6, 10, 4, 32


def write_folders(root: Path) -> dict[str, dict[str, np.ndarray]]:
    """pool/images (+ pool/masks: the truth), seed/images + palette masks, test/images + masks
    with a 2-pixel ignored border. Returns the written masks by folder and file name."""
    pool = make_shapes(POOL, seed=3, size=SIZE)
    seed = make_shapes(SEEDS, seed=3, size=SIZE, start=POOL)
    test = make_shapes(TEST, seed=3, size=SIZE, start=POOL + SEEDS)
    write_segmentation_folder(pool, root / "pool")
    write_segmentation_folder(seed, root / "seed")
    write_segmentation_folder(test, root / "test")
    written = {"pool": {}, "seed": {}, "test": {}}
    for uri, mask in zip(seed.uris, seed.masks):  # the seed masks as palette PNGs (index = class)
        image = Image.fromarray(mask.astype(np.uint8), mode="P")
        image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0] + [128] * (251 * 3))
        image.save(root / "seed" / "masks" / f"{Path(uri).stem}.png")
        written["seed"][f"{Path(uri).stem}.png"] = mask
    for uri, mask in zip(test.uris, test.masks):
        border = mask.copy()
        border[:2], border[-2:] = 255, 255
        Image.fromarray(border.astype(np.uint8)).save(root / "test" / "masks" / f"{Path(uri).stem}.png")
        written["test"][f"{Path(uri).stem}.png"] = border
    written["pool"] = {f"{Path(u).stem}.png": m for u, m in zip(pool.uris, pool.masks)}
    return written


CAMPAIGN = f"""
[campaign]
name = "own-seg"
task = "segmentation"
strategy = "entropy"
rounds = 2
batch_size = {BATCH}
min_labels_to_train = 4
mc_samples = 2
epochs = 1
device = "cpu"

[data]
pool = "pool/images"
labeled = "seed/images"
test = "test/images"
labels = {list(SHAPE_CLASSES)!r}
image_size = {SIZE}
channels = 3
workers = 0

[annotator]
kind = "simulated"
truth = "pool/masks"

[segmentation]
labeled_masks = "seed/masks"
test_masks = "test/masks"
heatmap_dir = "heatmaps"

[database]
url = "sqlite:///al.db"
""".replace("'", '"')


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    root = tmp_path_factory.mktemp("ownseg")
    written = write_folders(root)
    (root / "campaign.toml").write_text(CAMPAIGN)
    result = run_cli("run", "campaign.toml", cwd=root)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return root, written, result


def test_run_campaign_file_on_own_folders_runs_two_rounds(ran) -> None:
    root, written, result = ran
    for index in (1, 2):
        assert re.search(rf"round {index}: mIoU 0\.\d{{3}} \(background 0\.\d\d, disc ", result.stdout), result.stdout
    assert f"Heatmaps of the selected samples: {2 * BATCH} PNG files in {root / 'heatmaps'}" in result.stdout
    engine = open_engine(f"sqlite:///{root / 'al.db'}")
    with session_scope(engine) as session:
        campaign = session.scalars(select(Campaign)).one()
        assert campaign.task_kind == "segmentation" and campaign.labels == list(SHAPE_CLASSES)
        splits = dict(session.execute(select(Sample.uri, Sample.split)).all())
        assert sum(s == SampleSplit.test for s in splits.values()) == TEST
        assert sum(s == SampleSplit.pool for s in splits.values()) == POOL + SEEDS
        assert all(u.startswith("../../test/images/") for u, s in splits.items() if s == SampleSplit.test)
        rounds = session.scalars(select(Round).order_by(Round.index)).all()
        assert [(r.status, r.labeled_count) for r in rounds] == [
            (RoundStatus.complete, SEEDS), (RoundStatus.complete, SEEDS + BATCH)]
        for r in rounds:
            # The yardstick: the test masks without their ignored 2-pixel border rows.
            assert r.segmentation_metrics["pixels"] == TEST * (SIZE - 4) * SIZE
            assert 0.0 < r.segmentation_metrics["miou"] <= 1.0
        annotations = session.execute(select(Sample.uri, Annotation.source, Annotation.mask)
                                      .join(Sample, Sample.id == Annotation.sample_id)).all()
        heatmaps = session.scalars(select(Heatmap)).all()
    seeds = [(u, m) for u, source, m in annotations if source == "given"]
    painted = [(u, m) for u, source, m in annotations if source == "simulated"]
    assert len(seeds) == SEEDS and len(painted) == 2 * BATCH
    for uri, blob in seeds:  # palette PNGs read by their index
        np.testing.assert_array_equal(mask_from_png_bytes(blob), written["seed"][Path(uri).name])
    for uri, blob in painted:  # the truth folder's masks, painted by the simulated annotator
        np.testing.assert_array_equal(mask_from_png_bytes(blob), written["pool"][Path(uri).name])
    assert len(heatmaps) == 2 * BATCH and all(Path(h.path).is_relative_to(root / "heatmaps") for h in heatmaps)


def test_a_rerun_of_the_finished_campaign_finds_its_files_and_writes_nothing(ran) -> None:
    root, _, _ = ran
    engine = open_engine(f"sqlite:///{root / 'al.db'}")

    def counts():
        with session_scope(engine) as session:
            return [session.query(t).count() for t in (Round, Annotation, Heatmap, Sample)]

    before = counts()
    again = run_cli("run", "campaign.toml", cwd=root)
    assert again.returncode == 0, again.stderr[-3000:]
    assert counts() == before


def test_export_writes_the_stored_masks_named_by_sample_uri(ran) -> None:
    root, written, _ = ran
    result = run_cli("export", "campaign.toml", "--to", "out/labels.csv", cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Wrote {SEEDS + 2 * BATCH} labeled samples" in result.stdout
    engine = open_engine(f"sqlite:///{root / 'al.db'}")
    with session_scope(engine) as session:
        stored = {uri: mask_from_png_bytes(blob) for uri, blob in session.execute(
            select(Sample.uri, Annotation.mask).join(Sample, Sample.id == Annotation.sample_id))}
    with (root / "out" / "labels.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "mask", "annotations", "agreement", "round", "split", "copy_of"]
    assert len(rows) == len(stored)
    by_file = {(root / "pool" / "images" / uri).resolve(): mask for uri, mask in stored.items()}
    kinds = {"seed": 0, "pool": 0}
    for row in rows:
        image = Path(row["path"]).resolve()
        part = image.relative_to(root.resolve()).parts[0]
        kinds[part] += 1
        # Named by URI, relative to the pool folder: seed/images/x.png is ../../seed/images/x.png.
        expected = (f"masks/_parent_/_parent_/seed/images/{image.name}" if part == "seed"
                    else f"masks/{image.name}")
        assert row["mask"] == expected
        with Image.open(root / "out" / row["mask"]) as png:
            assert png.mode == "P"
            got = np.asarray(png)
        np.testing.assert_array_equal(got, by_file[image])
        assert row["annotations"] == "1" and float(row["agreement"]) == 1.0 and row["split"] == "pool"
        assert (row["round"] == "") == (part == "seed")
    assert kinds == {"seed": SEEDS, "pool": 2 * BATCH}
    # the CLI's progress bar over the mask files: one call per file written, counting to the total
    from activelabel.campaign.export import export_labels

    calls: list[tuple[int, int]] = []
    again = export_labels(engine, "own-seg", root / "again" / "labels.csv", on_mask=lambda n, total: calls.append((n, total)))
    assert again.rows == len(rows)
    assert calls == [(n, len(rows)) for n in range(1, len(rows) + 1)]


def test_own_folder_segmentation_settings_name_what_is_missing(tmp_path) -> None:
    (tmp_path / "c.toml").write_text(CAMPAIGN.replace('labeled_masks = "seed/masks"\n', ""))
    with pytest.raises(ConfigError, match="data.labeled needs its masks: set segmentation.labeled_masks"):
        load_campaign_file(tmp_path / "c.toml")
    (tmp_path / "c.toml").write_text(CAMPAIGN.replace('truth = "pool/masks"\n', ""))
    with pytest.raises(ConfigError, match="annotator.truth is required .* a folder of the pool's true masks"):
        load_campaign_file(tmp_path / "c.toml")
    (tmp_path / "c.toml").write_text(CAMPAIGN.replace("[segmentation]\n", "[segmentation]\nignore_index = 2\n"))
    with pytest.raises(ConfigError, match="ignore_index 2 must lie in 0..255 and not be a class index"):
        load_campaign_file(tmp_path / "c.toml")


def test_a_mask_folder_with_another_ignore_value_is_stored_with_255(tmp_path) -> None:
    """Inside a campaign (training, votes, metrics, export) an ignored pixel is always 255."""
    from activelabel.campaign.data import campaign_data, clear_cache

    written = write_folders(tmp_path)
    for name, mask in written["test"].items():  # the test masks with 254 for their ignored border
        Image.fromarray(np.where(mask == 255, 254, mask).astype(np.uint8)).save(tmp_path / "test" / "masks" / name)
    (tmp_path / "c.toml").write_text(CAMPAIGN.replace("[segmentation]\n", "[segmentation]\nignore_index = 254\n"))
    config, _ = load_campaign_file(tmp_path / "c.toml")
    clear_cache()
    data = campaign_data(config)
    assert len(data.test) == TEST and len(data.seeds) == SEEDS
    for uri in data.test:
        np.testing.assert_array_equal(data.given_masks[uri], written["test"][Path(uri).name])
    clear_cache()


def test_colour_masks_are_read_through_the_palette_of_the_campaign_file(tmp_path) -> None:
    from activelabel.campaign.data import campaign_data, clear_cache

    colours = {0: (0, 0, 0), 1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255), 4: (255, 255, 0), 255: (9, 9, 9)}
    written = write_folders(tmp_path)
    for name, mask in written["test"].items():
        rgb = np.zeros((*mask.shape, 3), dtype=np.uint8)
        for value, colour in colours.items():
            rgb[mask == value] = colour
        Image.fromarray(rgb).save(tmp_path / "test" / "masks" / name)
    palette = ("palette = { background = [0, 0, 0], disc = [255, 0, 0], square = [0, 255, 0], line = [0, 0, 255], "
               "dot = [255, 255, 0] }\nignore_color = [9, 9, 9]\n")
    (tmp_path / "c.toml").write_text(CAMPAIGN.replace("[segmentation]\n", "[segmentation]\n" + palette))
    config, _ = load_campaign_file(tmp_path / "c.toml")
    assert config.palette == ((0, 0, 0, 0), (255, 0, 0, 1), (0, 255, 0, 2), (0, 0, 255, 3), (255, 255, 0, 4),
                              (9, 9, 9, 255))
    clear_cache()
    # The seed masks stay palette PNGs whose colours are the same: read as colours they match too.
    data = campaign_data(config)
    for uri in data.test:
        np.testing.assert_array_equal(data.given_masks[uri], written["test"][Path(uri).name])
    for uri in data.seeds:
        np.testing.assert_array_equal(data.given_masks[uri], written["seed"][Path(uri).name])
    clear_cache()
    (tmp_path / "c.toml").write_text(CAMPAIGN.replace("[segmentation]\n", "[segmentation]\npalette = { cat = [1, 2, 3] }\n"))
    with pytest.raises(ConfigError, match="segmentation.palette: class 'cat' is not in data.labels"):
        load_campaign_file(tmp_path / "c.toml")


def test_pool_images_without_a_true_mask_are_named_with_the_mask_path_up_front_and_mid_round(tmp_path) -> None:
    """F11 of trial 11: pool images whose true mask is missing failed round 1 mid-way with
    "sample 's002.png' has no true mask". Creation (and a rerun) now refuses first, naming the
    mask files looked for and the key; the annotator's own error names the path too."""
    from activelabel.campaign import prepare_campaign
    from activelabel.campaign.data import campaign_data
    from activelabel.campaign.data import clear_cache
    from activelabel.campaign.kinds import task_kind

    clear_cache()
    write_folders(tmp_path)
    (tmp_path / "campaign.toml").write_text(CAMPAIGN)
    masks = (tmp_path / "pool" / "masks").resolve()
    gone = sorted(masks.glob("*.png"))[:5]
    for mask in gone:
        mask.rename(tmp_path / mask.name)
    config, _ = load_campaign_file(tmp_path / "campaign.toml")
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    with pytest.raises(ConfigError) as refused:
        prepare_campaign(engine, config)
    message = str(refused.value)
    assert message.startswith(f"annotator.truth: 5 pool image(s) have no true mask in the annotator.truth folder "
                              f"{masks}, so the simulated annotator could not answer them (missing: ")
    assert message.endswith(" and 2 more); add the masks (same relative path as the image, suffix .png), or remove "
                            "the images from data.pool; nothing was written")
    named = message.split("(missing: ", 1)[1].split(" and 2 more", 1)[0].split(", ")
    assert len(named) == 3 and set(named) < {str(m) for m in gone}
    with session_scope(engine) as session:
        assert session.scalar(select(Campaign.id)) is None

    for mask in gone:
        (tmp_path / mask.name).rename(mask)
    campaign_id = prepare_campaign(engine, config)
    gone[0].unlink()
    with pytest.raises(ConfigError, match=rf"annotator.truth: 1 pool image\(s\) .*\(missing: {re.escape(str(gone[0]))}\).*"
                                          "; no round was started$"):
        prepare_campaign(engine, config)
    with session_scope(engine) as session:
        uri = session.scalar(select(Sample.uri).where(Sample.campaign_id == campaign_id,
                                                       Sample.uri.endswith(gone[0].name)))
    annotator = task_kind(config).simulated_annotator(config, campaign_data(config))
    with pytest.raises(ConfigError) as mid_round:
        annotator.truth(uri)
    assert str(mid_round.value) == (
        f"sample {uri!r} has no true mask for the simulated annotator ({gone[0]} is missing); add it to the "
        "annotator.truth folder (same relative path as the image, suffix .png)")
