"""round.training: what a round's training ran, as the round stored it (real tiny digits rounds).

The default recipe raises the campaign's epochs until at least 200 optimizer steps run
(pipeline.training.planned_epochs); fixed epochs and the gal2017 recipe train exactly ``epochs``
(tests/campaign/test_gal_recipe.py checks the latter through `compare`).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from sqlalchemy import select

from activelabel.campaign import CampaignConfig, prepare_campaign
from activelabel.campaign.model_settings import model_spec, training_config, training_record
from activelabel.campaign.training_terms import describe_training, training_cells
from activelabel.pipeline.architectures import ARCHITECTURES, BATCH_NORM_ARCHITECTURES
from activelabel.pipeline.model import GAL_CNN, SMALL_CNN, build_model
from activelabel.pipeline.training import optimizer_steps, planned_epochs, train_model, uses_batch_norm
from activelabel.storage import Round, open_engine, session_scope
from tests_support_rounds import run_round


def _tiny(**settings) -> CampaignConfig:
    return CampaignConfig(name="t", rounds=1, batch_size=5, initial_labeled=10, mc_samples=2, device="cpu",
                          **settings)


def _first_round_training(tmp_path, config: CampaignConfig) -> tuple[str, dict | None]:
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    run_round(engine, prepare_campaign(engine, config))
    with session_scope(engine) as session:
        rnd = session.scalar(select(Round).where(Round.index == 1))
        return rnd.kind.value, rnd.training


def test_the_default_recipe_stores_the_raised_epochs_it_ran(tmp_path):
    config = _tiny(epochs=1)
    kind, training = _first_round_training(tmp_path, config)
    assert kind == "active"
    expected_epochs = planned_epochs(10, training_config(config, 10), skips_batch_of_one=True)
    assert expected_epochs == 200  # 10 labels: one batch of 10 per epoch, 200 steps at least
    assert training == {
        "epochs": expected_epochs, "requested_epochs": 1, "steps": 200, "batch_size": 32, "learning_rate": 1e-3,
        "weight_decay": 1e-4, "l2_penalty": 0.0, "min_steps": 200, "trained_on": 10, "held_out": 0, "members": 1,
        "recipe": "default",
    }
    assert training_cells(training) == ("200", "200")
    assert describe_training(training) == (
        "Training: 200 epochs (the campaign sets 1; raised to take at least 200 optimizer steps), 200 optimizer "
        "steps per model in batches of 32, on 10 labels; Adam, learning rate 0.001, weight decay 0.0001; recipe "
        "default, 1 model.")
    # a segmentation round learns from masks (trial 15 F11: status --round said "labels")
    assert ", on 10 masks; Adam" in describe_training(training, "masks")


def test_fixed_epochs_store_exactly_the_epochs_asked(tmp_path):
    _, training = _first_round_training(tmp_path, _tiny(epochs=3, fixed_epochs=True, weight_decay_scale=2.0))
    assert (training["epochs"], training["requested_epochs"], training["steps"], training["min_steps"]) == (3, 3, 3, 0)
    assert training["weight_decay"] == pytest.approx(2.0 / 10)  # c / N, N the labels trained on
    assert describe_training(training).startswith("Training: 3 epochs, 3 optimizer steps per model")


def test_a_round_that_trains_no_model_stores_no_training(tmp_path):
    kind, training = _first_round_training(tmp_path, _tiny(epochs=1, min_labels_to_train=50))
    assert (kind, training) == ("cold_start", None)
    assert training_cells(None) == ("", "") and describe_training(None) is None


@pytest.mark.parametrize(("architecture", "n", "steps"), [
    # batch norm: the last batch of one per epoch takes no step, so 200 epochs x 1 (trial 15 F4: was 100 x 1)
    (SMALL_CNN, 33, 200),
    (GAL_CNN, 33, 200),  # no batch norm: 100 epochs x 2 batches
    (SMALL_CNN, 40, 200),  # a last batch of 8 is stepped
])
def test_optimizer_steps_equal_the_steps_the_loop_takes(architecture, n, steps):
    config = _tiny(epochs=1, architecture=architecture)
    spec = model_spec(config, 1, 10, 8)
    training = training_config(config, n)
    taken = []
    handle = register_optimizer_step_post_hook(lambda *_: taken.append(1))
    try:
        rng = np.random.default_rng(0)
        model = train_model(rng.random((n, 1, 8, 8), dtype=np.float32), rng.integers(0, 10, n), spec, training,
                            seed=0, device=torch.device("cpu"))
    finally:
        handle.remove()
    assert uses_batch_norm(model) == (architecture == SMALL_CNN)
    assert len(taken) == optimizer_steps(n, training, skips_batch_of_one=uses_batch_norm(model)) == steps


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_the_batch_norm_table_says_what_the_networks_have(architecture):
    # Progress totals and the raised-epochs note plan steps before a network exists, from
    # BATCH_NORM_ARCHITECTURES; the training loop asks the network. They must agree.
    config = CampaignConfig(name="t", architecture=architecture, channels=3, image_size=32)
    model = build_model(model_spec(config, 3, 10, 32))
    assert uses_batch_norm(model) == (architecture in BATCH_NORM_ARCHITECTURES)


def test_a_segmentation_round_on_25_masks_takes_at_least_200_steps_and_stores_them():
    # Trial 15 F4: 25 masks in batches of 8 planned ceil(25/8) = 4 steps an epoch (50 epochs), but the
    # U-Net skips the last batch of one (batch norm): 150 steps ran while status said "at least 200".
    from dataclasses import replace

    from activelabel.pipeline.segmentation import train_segmentation
    from activelabel.pipeline.segmentation_model import SegmentationSpec

    n = 25
    config = CampaignConfig(name="s", task="segmentation", dataset="shapes", strategy="entropy", epochs=40)
    training = replace(training_config(config, n), batch_size=8, learning_rate=5e-3)  # the round's recipe
    rng = np.random.default_rng(0)
    taken = []
    handle = register_optimizer_step_post_hook(lambda *_: taken.append(1))
    try:
        train_segmentation(rng.random((n, 1, 8, 8), dtype=np.float32), rng.integers(0, 2, (n, 8, 8)),
                           SegmentationSpec(in_channels=1, num_classes=2, width=4), training, seed=0,
                           device=torch.device("cpu"), ignore_index=255)
    finally:
        handle.remove()
    record = training_record(config, training, n, skips_batch_of_one=True, recipe="segmentation")
    assert (record["epochs"], record["requested_epochs"], record["steps"], record["min_steps"]) == (67, 40, 201, 200)
    assert len(taken) == record["steps"]
