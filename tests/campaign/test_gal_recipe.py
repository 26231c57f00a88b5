"""recipe = "gal2017": its defaults and what overrides them, the training settings a round gets,
where it is refused, the campaign file, and a tiny `compare --recipe gal2017` run on digits."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.experiment import ExperimentConfig
from activelabel.campaign.model_settings import model_spec, training_config
from activelabel.campaign.recipes import recipe_defaults
from activelabel.errors import ConfigError
from activelabel.pipeline.training import planned_epochs


def test_the_recipe_fills_only_what_is_left_unset():
    assert recipe_defaults({"epochs": 40}) == {"epochs": 40}  # no recipe: unchanged
    filled = recipe_defaults({"recipe": "gal2017", "epochs": None})
    assert filled == {"recipe": "gal2017", "architecture": "gal_cnn", "epochs": 50, "fixed_epochs": True,
                      "weight_decay_scale": 3.5}
    mine = recipe_defaults({"recipe": "gal2017", "epochs": 7, "weight_decay_scale": 2.0, "architecture": "small_cnn"})
    assert (mine["epochs"], mine["weight_decay_scale"], mine["architecture"], mine["fixed_epochs"]) == (
        7, 2.0, "small_cnn", True)
    with pytest.raises(ConfigError, match="unknown training recipe 'gal2016'"):
        recipe_defaults({"recipe": "gal2016"})


def test_a_round_under_the_recipe_trains_with_batches_of_128_and_l2_c_over_n_on_the_dense_layer():
    config = CampaignConfig(name="g", **{k: v for k, v in recipe_defaults({"recipe": "gal2017"}).items()})
    for n in (20, 250, 1000):
        training = training_config(config, n)
        assert training.batch_size == 128 and training.weight_decay == 0.0 and training.min_steps == 0
        assert training.l2_penalty == pytest.approx(3.5 / n)
        assert planned_epochs(n, training, skips_batch_of_one=False) == 50
    # Without the recipe, weight_decay_scale stays Adam's decay on every weight, batches of 32.
    plain = training_config(CampaignConfig(name="p", weight_decay_scale=3.5, fixed_epochs=True, epochs=50), 20)
    assert (plain.batch_size, plain.l2_penalty) == (32, 0.0) and plain.weight_decay == pytest.approx(3.5 / 20)
    spec = model_spec(config, 1, 10, 28)
    assert spec.architecture == "gal_cnn" and spec.input_size == (28, 28)
    assert model_spec(CampaignConfig(name="s"), 1, 10, 28).input_size is None  # small_cnn: no size stored


@pytest.mark.parametrize("settings, message", [
    ({"recipe": "gal2017", "architecture": "resnet18", "weight_decay_scale": 3.5}, "resnet18 has none"),
    ({"recipe": "gal2017", "architecture": "gal_cnn"}, "needs weight_decay_scale"),
    ({"recipe": "gal2017", "task": "segmentation", "dataset": "shapes", "weight_decay_scale": 3.5},
     "trains classifiers"),
    ({"recipe": "other"}, "unknown training recipe 'other'"),
])
def test_the_recipe_is_refused_where_it_does_not_apply(settings, message):
    with pytest.raises(ConfigError, match=message):
        CampaignConfig(name="x", **settings)


def test_an_experiment_stores_the_recipe_and_its_filled_in_values():
    experiment = ExperimentConfig(name="e", strategies=("bald",), seeds=(0,),
                                  campaign={"recipe": "gal2017", "epochs": 3})
    shared = experiment.to_dict()["campaign"]
    assert (shared["recipe"], shared["architecture"], shared["epochs"], shared["fixed_epochs"],
            shared["weight_decay_scale"]) == ("gal2017", "gal_cnn", 3, True, 3.5)


def test_a_campaign_file_picks_the_recipe_and_its_explicit_settings_win(tmp_path):
    from activelabel.campaign.file import load_campaign_file, template

    (tmp_path / "pool").mkdir()
    base = template("gal").replace('kind = "labelstudio"', 'kind = "simulated"').replace(
        "# truth = ...", 'truth = "truth.csv"')
    # The recipe's defaults apply to the keys the file leaves out (the template writes them all).
    base = "\n".join(line for line in base.splitlines()
                     if not line.startswith(("epochs =", "architecture =")))
    base = base.replace("[model]\n", '[model]\nrecipe = "gal2017"\n', 1)
    (tmp_path / "a.toml").write_text(base)
    config, _ = load_campaign_file(tmp_path / "a.toml")
    assert (config.recipe, config.architecture, config.epochs, config.fixed_epochs, config.weight_decay_scale) == (
        "gal2017", "gal_cnn", 50, True, 3.5)
    explicit = base.replace("[campaign]\n", "[campaign]\nepochs = 12\n", 1).replace(
        "[model]\n", '[model]\narchitecture = "small_cnn"\nweight_decay_scale = 2.0\n', 1)
    (tmp_path / "b.toml").write_text(explicit)
    config, _ = load_campaign_file(tmp_path / "b.toml")
    assert (config.architecture, config.epochs, config.weight_decay_scale) == ("small_cnn", 12, 2.0)


def test_compare_with_the_recipe_runs_gal_cnn_rounds_on_digits(tmp_path):
    """bald, one seed, 2 rounds of 10 on digits (8x8: the smallest size gal_cnn takes)."""
    database = tmp_path / "gal.db"
    command = [sys.executable, "-m", "activelabel.cli", "compare", "--dataset", "digits", "--strategies", "bald",
               "--seeds", "1", "--rounds", "2", "--batch-size", "10", "--initial-labeled", "20",
               "--initial-balanced", "--pool-subset", "200", "--mc-samples", "3", "--recipe", "gal2017",
               "--epochs", "5", "--device", "cpu", "--experiment", "gal", "--database-url", f"sqlite:///{database}"]
    result = subprocess.run(command, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as db:
        config = json.loads(db.execute("SELECT config FROM campaign WHERE name = 'gal-bald-seed0'").fetchone()[0])
        rounds = db.execute("SELECT id, \"index\", status, labeled_count, test_accuracy FROM round "
                            "ORDER BY \"index\"").fetchall()
        trainings = [json.loads(t) for (t,) in db.execute("SELECT training FROM round ORDER BY \"index\"")]
        architectures = [json.loads(a) for (a,) in db.execute("SELECT architecture FROM model_checkpoint")]
        scores = [db.execute("SELECT count(*) FROM score WHERE round_id = ?", (r[0],)).fetchone()[0] for r in rounds]
        picked = [db.execute("SELECT count(*) FROM selection WHERE round_id = ?", (r[0],)).fetchone()[0]
                  for r in rounds]
    assert (config["recipe"], config["architecture"], config["epochs"], config["fixed_epochs"],
            config["weight_decay_scale"]) == ("gal2017", "gal_cnn", 5, True, 3.5)
    assert [(r[1], r[2], r[3]) for r in rounds] == [(1, "complete", 20), (2, "complete", 30)]
    assert all(0.0 <= r[4] <= 1.0 for r in rounds)
    assert architectures == [{"name": "gal_cnn", "in_channels": 1, "num_classes": 10, "conv_dropout": 0.25,
                              "input_size": [8, 8], "head_dropout": 0.5}] * 2
    assert scores == [200, 200] and picked == [10, 10]  # the pool subset scored, one batch picked
    # What ran, as stored: exactly --epochs (one batch of 128 per epoch), Adam without decay, L2 c / N.
    for training, labels in zip(trainings, (20, 30)):
        assert training == {"epochs": 5, "requested_epochs": 5, "steps": 5, "batch_size": 128, "learning_rate": 1e-3,
                            "weight_decay": 0.0, "l2_penalty": pytest.approx(3.5 / labels), "min_steps": 0,
                            "trained_on": labels, "held_out": 0, "members": 1, "recipe": "gal2017"}
