"""The report's settings table and metric names follow the campaign's data (no campaign run)."""

from __future__ import annotations

from activelabel.campaign.config import CampaignConfig
from activelabel.report.build import metrics, settings_rows
from activelabel.report.data import RoundRow, yardstick
from activelabel.report.uncertainty import _classification_measures


def _own(**changes) -> dict:
    settings = dict(name="own", dataset="files", data_pool="/data/images", labels=("a", "b"),
                    annotator="labelstudio", evaluation_size=20)
    return CampaignConfig(**{**settings, **changes}).to_dict()


def test_an_own_data_campaign_shows_only_the_settings_that_apply() -> None:
    rows = dict(settings_rows({"strategies": ["bald"], "seeds": [0], "campaign": _own()}))
    assert rows["dataset"] == "files" and rows["data_pool"] == "/data/images" and rows["evaluation_size"] == "20"
    for builtin_only in ("test_fraction", "initial_labeled", "initial_balanced"):
        assert builtin_only not in rows
    assert "None" not in rows.values()  # unset settings (data_test, pool_subset, ...) are left out
    assert "data_test" not in rows and "pool_subset" not in rows
    assert list(rows)[:6] == ["strategies", "seeds", "dataset", "data_pool", "evaluation_size", "rounds"]


def test_a_built_in_dataset_keeps_its_test_fraction_and_initial_labels() -> None:
    config = CampaignConfig(name="digits").to_dict()
    rows = dict(settings_rows({"strategies": ["bald"], "seeds": [0], "campaign": config}))
    assert rows["test_fraction"] == str(config["test_fraction"])
    assert rows["initial_labeled"] == str(config["initial_labeled"])
    assert "data_pool" not in rows and "evaluation_size" not in rows


def test_mnists_own_test_split_leaves_the_unused_test_fraction_out() -> None:
    """Trial 17 F5: ``mnist:...?test=t10k`` tests on the 10,000 official images; the settings
    table still listed test_fraction 0.2 as if it applied."""
    for dataset, shown in (("mnist:/data/mnist?limit=2000&test=t10k", False), ("mnist:/data/mnist?test=t10k", False),
                           ("mnist:/data/mnist?limit=2000", True), ("digits", True)):
        config = CampaignConfig(name="m", dataset=dataset).to_dict()
        rows = dict(settings_rows({"strategies": ["bald"], "seeds": [0], "campaign": config}))
        assert ("test_fraction" in rows) is shown, dataset
        assert rows["initial_labeled"] == str(config["initial_labeled"])


def test_the_metric_is_named_by_the_split_it_is_measured_on() -> None:
    assert yardstick(_own()) == "evaluation"
    assert yardstick(_own(data_test="/data/test")) == "test"
    assert yardstick(_own(evaluation_size=0)) == "test"
    assert yardstick(CampaignConfig(name="digits").to_dict()) == "test"
    assert [label for _, label in metrics("evaluation")] == ["evaluation accuracy", "evaluation NLL (nats)",
                                                             "evaluation ECE"]
    row = RoundRow(index=3, kind="active", labeled=40, accuracy=0.8125, nll=0.6, ece=0.05, timings={})
    assert _classification_measures(row, _own())[0] == "evaluation accuracy 0.8125"
    assert _classification_measures(row, CampaignConfig(name="digits").to_dict())[0] == "test accuracy 0.8125"
