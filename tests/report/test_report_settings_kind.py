"""The report's Settings table shows what applies to the campaign's kind and data (trial 8,
item 13): a Label Studio classification campaign its label set, annotator, min_new_labels and
how images are served, without experiment rows; a segmentation campaign on your own folders no
test_fraction, evaluation_size, initial_labeled or pool_subset; never a secret."""

from __future__ import annotations

import html
import re

from activelabel.campaign import CampaignConfig
from activelabel.report.data import CampaignRecord
from activelabel.report.segmentation import settings_rows as segmentation_settings_rows
from activelabel.report.settings import campaign_settings_rows, masked
from activelabel.storage import Campaign, open_engine, session_scope

SECRET_PREFIX = "https://reader:s3cret@images.example.org/set?token=abc123&size=2"


def _labelstudio(**changes) -> CampaignConfig:
    return CampaignConfig(**{**dict(name="shapes", dataset="files", data_pool="/data/pool", labels=("disc", "square"),
                                    annotator="labelstudio", evaluation_size=30, min_new_labels=15,
                                    document_root="/srv/images"), **changes})


def _rows(config: CampaignConfig) -> dict[str, str]:
    return dict(campaign_settings_rows(config.strategy, list(config.labels or ()), config.to_dict()))


def test_a_label_studio_classification_campaign_shows_who_labels_and_when_a_round_completes() -> None:
    rows = _rows(_labelstudio())
    assert rows["strategy"] == "bald" and rows["labels"] == "disc, square"
    assert rows["annotator"] == "labelstudio" and rows["annotations_per_task"] == "1"
    assert rows["min_new_labels"] == "15 (the evaluation round needs all of its samples)"
    assert rows["document_root"] == "/srv/images" and "image_url_prefix" not in rows
    assert rows["data_pool"] == "/data/pool" and rows["evaluation_size"] == "30"
    for absent in ("strategies", "seeds", "seed", "test_fraction", "initial_labeled", "pool_subset", "data_test",
                   "annotator_noise", "ensemble_size"):
        assert absent not in rows
    assert "None" not in rows.values()
    assert list(rows)[:3] == ["strategy", "labels", "annotator"]


def test_with_a_test_set_there_is_no_evaluation_size_and_images_are_said_to_be_embedded() -> None:
    rows = _rows(_labelstudio(data_test="/data/test", document_root=None, min_new_labels=None))
    assert rows["data_test"] == "/data/test" and "evaluation_size" not in rows
    assert rows["images"] == "embedded in the tasks (PNG data)"
    assert rows["min_new_labels"] == "None: every sample of a round"


def test_a_password_or_token_in_a_url_never_reaches_the_page(tmp_path) -> None:
    config = _labelstudio(document_root=None, image_url_prefix=SECRET_PREFIX)
    assert _rows(config)["image_url_prefix"] == "https://reader:***@images.example.org/set?token=***&size=2"
    engine = open_engine(f"sqlite:///{tmp_path / 'ls.db'}")
    with session_scope(engine) as session:
        session.add(Campaign(name=config.name, task_kind="classification", labels=list(config.labels),
                             strategy=config.strategy, dataset=config.dataset, config=config.to_dict()))
    from activelabel.report.build import write_report

    page = write_report(engine, "shapes", tmp_path / "shapes.html").path.read_text(encoding="utf-8")
    table = re.search(r'<table id="settings">(.*?)</table>', page, re.S).group(1)
    cells = dict(re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td></tr>", table))
    assert html.unescape(cells["image_url_prefix"]) == "https://reader:***@images.example.org/set?token=***&size=2"
    assert html.unescape(cells["labels"]) == "disc, square" and cells["annotator"] == "labelstudio"
    assert "s3cret" not in page and "abc123" not in page
    assert "strategies" not in cells and "seeds" not in cells


def test_masked_hides_passwords_and_token_values_only() -> None:
    assert masked("postgresql+psycopg://al_user:pw@db:5432/al") == "postgresql+psycopg://al_user:***@db:5432/al"
    assert masked("http://host:8080/images/?api_key=XYZ") == "http://host:8080/images/?api_key=***"
    assert masked("/srv/images") == "/srv/images" and masked(15) == "15"


def test_a_simulated_built_in_campaign_keeps_its_seed_and_test_fraction() -> None:
    config = CampaignConfig(name="digits", annotator_noise=0.1)
    rows = _rows(config)
    assert rows["seed"] == "0" and rows["annotator"] == "simulated" and rows["annotator_noise"] == "0.1"
    assert rows["test_fraction"] == "0.2" and rows["initial_labeled"] == str(config.initial_labeled)
    assert "min_new_labels" not in rows and "document_root" not in rows and "evaluation_size" not in rows


def test_a_segmentation_campaign_on_own_folders_shows_no_rows_that_do_not_apply() -> None:
    config = CampaignConfig(name="segown", task="segmentation", dataset="files", data_pool="/d/pool",
                            data_labeled="/d/seed", labeled_masks="/d/seed-masks", data_test="/d/test",
                            test_masks="/d/test-masks", labels=("background", "disc"), annotator="labelstudio",
                            min_new_labels=4)
    record = CampaignRecord("segown", config.strategy, 0, ["background", "disc"], config.to_dict(), [],
                            task="segmentation")
    rows = dict(segmentation_settings_rows(record))
    for absent in ("test_fraction", "evaluation_size", "initial_labeled", "pool_subset", "min_labels_to_train",
                   "fixed_epochs"):
        assert absent not in rows
    assert rows["data_pool"] == "/d/pool" and rows["data_test"] == "/d/test" and rows["test_masks"] == "/d/test-masks"
    assert rows["labeled_masks"] == "/d/seed-masks" and rows["min_new_labels"] == "4"  # a test set: no evaluation round
    assert rows["annotator"] == "labelstudio" and rows["task kind"] == "segmentation"
    assert "None" not in rows.values()
