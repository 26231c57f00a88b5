"""Campaign files: the template, overrides, and each bad input as one clear line, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.models import mobilenet_v3_small

from activelabel.campaign.file import load_campaign_file, template
from tests_support_campaignfile import write_campaign_file
from tests_support_owndata import write_manifest, write_unlabeled_pool

EXE = [sys.executable, "-m", "activelabel.cli"]


def write_campaign(folder: Path, **replace: str) -> Path:
    return write_campaign_file(folder / "campaign.toml", "files-test", simulated=True, replace=replace)


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("own")
    truth = write_unlabeled_pool(root / "images", count=60)
    write_manifest(root / "truth.csv", truth, base=root / "images")
    return root


def test_template_lists_every_key_with_default_and_meaning() -> None:
    text = template("x")
    for key in ("pool =", "# labeled =", "# test =", "labels =", "evaluation_size = 100", "image_size = 28",
                "channels = 1", "# mean =", "augmentation = false", "architecture = \"small_cnn\"",
                "# weights =", "freeze_backbone = false", 'kind = "labelstudio"', "# truth =",
                "# label_budget =", "# target_accuracy =", "# plateau_threshold =", "min_labels_to_train"):
        assert key in text, key
    assert all("#" in line for line in text.splitlines() if "=" in line)  # every key explained


def test_file_values_paths_relative_to_the_file_and_overrides_win(data_folder) -> None:
    path = write_campaign(data_folder, **{"batch_size = 20": "batch_size = 7"})
    config, url = load_campaign_file(path, {"rounds": 3, "name": None})
    assert config.batch_size == 7 and config.rounds == 3 and config.name == "files-test"
    assert config.data_pool == str((data_folder / "images").resolve())
    assert config.truth == str((data_folder / "truth.csv").resolve())
    assert config.dataset == "files" and url is None


def test_a_segmentation_files_heatmaps_default_beside_it_whatever_the_working_folder(data_folder, tmp_path,
                                                                                        monkeypatch) -> None:
    # trial 15: heatmaps went to ./activelabel-heatmaps of whichever folder a command ran in
    path = write_campaign_file(data_folder / "seg.toml", "seg test", simulated=True,
                               settings={"campaign.task": "segmentation"})
    monkeypatch.chdir(tmp_path)
    config, _ = load_campaign_file(path)
    assert config.task == "segmentation"
    assert config.heatmap_dir == str((data_folder / "activelabel-heatmaps" / "seg-test").resolve())
    given = write_campaign_file(data_folder / "seg2.toml", "seg2", simulated=True,
                                settings={"campaign.task": "segmentation", "segmentation.heatmap_dir": "maps"})
    assert load_campaign_file(given)[0].heatmap_dir == str((data_folder / "maps").resolve())
    assert load_campaign_file(write_campaign(data_folder))[0].heatmap_dir is None  # classification: none


@pytest.mark.parametrize("replace, message", [
    ({"image_size = 28": "imag_size = 28"}, "unknown key 'data.imag_size'; did you mean 'data.image_size'?"),
    ({"[stop]": "[stop]\nbatch_size = 3"}, "unknown key 'stop.batch_size'; did you mean 'campaign.batch_size'?"),
    ({"image_size = 28": 'image_size = "big"'}, "data.image_size: input should be a valid integer"),
    ({"channels = 1": "channels = 2"}, "data.channels: input should be 1 or 3, got 2"),
    ({'pool = "images/"': 'pool = "nowhere/"'}, "data.pool: folder or manifest"),
    ({"# url = ...": 'url = "postgresql+psycopg://u:secret@localhost/db"'}, "database.url holds a password"),
    ({'name = "files-test"': 'name = "team/cats"'},
     "campaign name 'team/cats' holds '/': a name becomes a file name and a CLI argument with a path separator "
     "is read as a file; choose a name without it (e.g. 'team-cats')"),
])
def test_each_config_error_names_file_and_key(data_folder, replace, message) -> None:
    from activelabel.campaign.setup import check_dataset

    path = write_campaign(data_folder, **replace)
    with pytest.raises(Exception) as error:
        config, _ = load_campaign_file(path)
        check_dataset(config)
    assert message in str(error.value)
    assert "secret" not in str(error.value)


def test_manifest_row_with_missing_file_and_label_outside_the_set(data_folder, tmp_path) -> None:
    from activelabel.campaign.setup import check_dataset

    manifest = tmp_path / "pool.csv"
    first = next(iter(sorted((data_folder / "images").rglob("*.png"))))
    manifest.write_text(f"path\n{first}\n{tmp_path / 'gone.png'}\n")
    path = write_campaign(data_folder, **{'pool = "images/"': f'pool = "{manifest}"'})
    with pytest.raises(Exception) as error:
        check_dataset(load_campaign_file(path)[0])
    assert "gone.png" in str(error.value) and "line 3" in str(error.value) and "data.pool" in str(error.value)

    labeled = tmp_path / "seeds.csv"
    labeled.write_text(f"path,label\n{first},zebra\n")
    path = write_campaign(data_folder, **{"# labeled = ...": f'labeled = "{labeled}"'})
    with pytest.raises(Exception) as error:
        check_dataset(load_campaign_file(path)[0])
    assert "zebra" in str(error.value) and "data.labeled" in str(error.value)


def test_weights_file_for_another_architecture_is_refused_before_anything_is_written(data_folder, tmp_path) -> None:
    weights = tmp_path / "mobilenet.pt"
    torch.save(mobilenet_v3_small(weights=None).state_dict(), weights)
    path = write_campaign(data_folder, **{'architecture = "small_cnn"': 'architecture = "resnet18"',
                                          "# weights = ...": f'weights = "{weights}"'})
    db = tmp_path / "al.db"
    result = subprocess.run([*EXE, "run", str(path), "--database-url", f"sqlite:///{db}"],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "mobilenet.pt" in lines[0] and "resnet18" in lines[0]
    assert not db.exists()  # nothing written


def test_init_writes_a_file_that_runs_after_setting_the_pool(tmp_path) -> None:
    result = subprocess.run([*EXE, "init", "campaign.toml"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "campaign.toml").read_text()
    assert 'name = "campaign"' in text
    again = subprocess.run([*EXE, "init", "campaign.toml"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_the_dask_section_says_where_rounds_are_scored(tmp_path):
    """[dask] address or workers (not both): a property of where the campaign runs, read apart
    from the stored settings; the template lists both keys."""
    from activelabel.campaign.file import CampaignFileError, dask_settings, template

    base = '[campaign]\nname = "d"\n[data]\npool = "images/"\nlabels = ["a", "b"]\n'
    file = tmp_path / "c.toml"
    file.write_text(base)
    assert dask_settings(file) == (None, None)
    file.write_text(base + '[dask]\nworkers = 3\n')
    assert dask_settings(file) == (None, 3)
    file.write_text(base + '[dask]\naddress = "tcp://sched:8786"\n')
    assert dask_settings(file) == ("tcp://sched:8786", None)
    file.write_text(base + '[dask]\naddress = "tcp://sched:8786"\nworkers = 2\n')
    with pytest.raises(CampaignFileError, match="not both") as caught:
        dask_settings(file)
    assert str(file) in str(caught.value)
    file.write_text(base + '[dask]\nworker = 2\n')
    with pytest.raises(CampaignFileError, match="dask.workers"):
        dask_settings(file)
    assert "[dask]" in template() and "# address = ..." in template() and "# workers = ..." in template()


def test_a_fixed_setting_changed_in_the_file_says_what_to_put_back_there(data_folder, tmp_path) -> None:
    """Trial 14 F6: batch_size edited in the file of an existing campaign was refused with the
    command-line hint (--campaign / --database-url); the file's refusal names the file, the key and
    the value to put back. A changed value given as an option keeps the command-line wording."""
    from activelabel.campaign import prepare_campaign
    from activelabel.storage.database import open_engine

    path = write_campaign_file(data_folder / f"fixed-{tmp_path.name}.toml", "files-test", simulated=True,
                               settings={"campaign.batch_size": 5, "data.evaluation_size": 10})
    url = f"sqlite:///{tmp_path / 'al.db'}"
    config, _ = load_campaign_file(path)
    prepare_campaign(open_engine(url), config)  # the campaign exists, created from the file
    text = path.read_text()
    assert f"batch_size = {config.batch_size}" in text
    data_edited = data_folder / f"edited-{tmp_path.name}.toml"  # beside the data: its relative paths hold
    data_edited.write_text(text.replace(f"batch_size = {config.batch_size}", "batch_size = 15", 1))

    def refused(*args: str) -> str:
        result = subprocess.run([*EXE, "run", *args, "--database-url", url], capture_output=True, text=True,
                                timeout=600, cwd=tmp_path, env={**os.environ, "COLUMNS": "400"})
        assert result.returncode == 1, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        return lines[0]

    assert refused(str(data_edited)) == (
        f"error: {data_edited}: campaign 'files-test' already exists with other settings (campaign.batch_size "
        f"{config.batch_size} -> 15); these settings are fixed once a campaign is created: put back what it was "
        f"created with (campaign.batch_size = {config.batch_size}), or start a new campaign: another "
        f"campaign.name or another database.url in {data_edited}")
    by_option = refused(str(path), "--batch-size", "7")
    assert f"(batch_size {config.batch_size} -> 7); pick another --campaign name or a fresh --database-url" in by_option
    assert "put back" not in by_option
