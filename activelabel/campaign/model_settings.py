"""The campaign's model and training settings, as the pipeline's own objects.

Imports no torch until a network is built (a weights file in :func:`check_model`; the
:class:`ModelSpec` and a Gal CNN's size check need none): the checks and notes a command makes before it runs use
this module, and a typo must answer in a second, not after torch's import (trial 14 F7).
"""

from __future__ import annotations

from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.recipes import RECIPE_TRAINING_BATCH
from activelabel.pipeline.architectures import GAL_LAYOUTS
from activelabel.pipeline.model_spec import ModelSpec
from activelabel.pipeline.segmentation_sizes import check_side
from activelabel.pipeline.training_plan import TrainingConfig, optimizer_steps, planned_epochs


def model_spec(config: CampaignConfig, in_channels: int, num_classes: int, image_size: int | None = None) -> ModelSpec:
    """The network a round trains, built for the campaign's channels, label set and image side
    (``image_size``: square images of that many pixels; needed by ``gal_cnn`` and ``gal_cnn_keras`` only).

    Raises ``ConfigError`` when ``gal_cnn`` (``gal_cnn_keras``) gets no image size or images under 8 (9) pixels.
    """
    return ModelSpec(
        in_channels=in_channels, num_classes=num_classes, architecture=config.architecture,
        dropout=config.dropout, weights=config.weights, freeze_backbone=config.freeze_backbone,
        mean=config.mean, std=config.std,
        input_size=(image_size, image_size) if config.architecture in GAL_LAYOUTS and image_size else None,
    )


def training_config(config: CampaignConfig, n_labeled: int | None = None) -> TrainingConfig:
    """The training recipe of a round on ``n_labeled`` labels (those the model trains on).

    Default recipe: Adam, batches of 32, weight decay 1e-4 on every weight, or
    ``weight_decay_scale / n_labeled`` with ``weight_decay_scale`` (Adam's coupled decay);
    ``fixed_epochs`` drops the 200-step minimum so ``epochs`` is exactly what runs.

    ``recipe = "gal2017"`` (Gal et al. 2017): batches of 128, Adam without weight decay, and the
    loss term ``weight_decay_scale / n_labeled * sum(W ** 2)`` over the hidden dense layer's
    weights (``TrainingConfig.l2_penalty``); epochs and ``fixed_epochs`` as set (the recipe's
    defaults: 50, fixed).
    """
    extra: dict = {}
    if config.recipe is not None:
        extra["batch_size"] = RECIPE_TRAINING_BATCH[config.recipe]
        extra["weight_decay"] = 0.0
        if config.weight_decay_scale is not None and n_labeled:
            extra["l2_penalty"] = config.weight_decay_scale / n_labeled
    elif config.weight_decay_scale is not None and n_labeled:
        extra["weight_decay"] = config.weight_decay_scale / n_labeled
    if config.fixed_epochs:
        extra["min_steps"] = 0
    return TrainingConfig(epochs=config.epochs, augment=config.augmentation, **extra)


def training_record(
    config: CampaignConfig, training: TrainingConfig, trained_on: int, *, members: int = 1, held_out: int = 0,
    skips_batch_of_one: bool, recipe: str | None = None,
) -> dict:
    """What a round's training ran, as stored in ``round.training`` (JSON).

    ``training`` is the recipe the loop ran with (:func:`training_config`, or a kind's own),
    ``trained_on`` the labels each model learned from, ``held_out`` the labels kept out for
    calibration, ``members`` the models trained (ensembles), ``skips_batch_of_one`` whether the
    model skips a last batch of one (batch norm: see ``pipeline.training.optimizer_steps``).
    Keys: ``epochs`` (:func:`~activelabel.pipeline.training.planned_epochs`: ``epochs``, or more
    so that ``min_steps`` optimizer steps run), ``requested_epochs`` (the campaign's ``epochs``),
    ``steps`` (optimizer steps per model), ``batch_size``, ``learning_rate``, ``weight_decay``
    (Adam's, coupled), ``l2_penalty`` (the loss term's lambda; 0: none), ``min_steps`` (0: fixed
    epochs), ``trained_on``, ``held_out``, ``members``, ``recipe`` (``recipe``, else the
    campaign's, else "default"). Shown by :mod:`activelabel.campaign.training_terms`.
    """
    return {
        "epochs": planned_epochs(trained_on, training, skips_batch_of_one=skips_batch_of_one),
        "requested_epochs": training.epochs,
        "steps": optimizer_steps(trained_on, training, skips_batch_of_one=skips_batch_of_one),
        "batch_size": training.batch_size,
        "learning_rate": training.learning_rate,
        "weight_decay": training.weight_decay,
        "l2_penalty": training.l2_penalty,
        "min_steps": training.min_steps,
        "trained_on": trained_on,
        "held_out": held_out,
        "members": members,
        "recipe": recipe or config.recipe or "default",
    }


def check_model(config: CampaignConfig, in_channels: int, num_classes: int, image_size: int | None = None) -> None:
    """Build the network once (and read its weights file) before anything is written.

    Raises ``WeightsFileError`` naming the file when it does not fit the architecture (for a
    segmentation campaign: the U-Net of ``segmentation_round.segmentation_spec``), and
    ``ConfigError`` when ``gal_cnn`` or ``gal_cnn_keras`` does not fit the image size, or when
    the U-Net cannot take images of ``image_size`` (its sides must be a multiple of the
    architecture's ``pipeline.segmentation_sizes.SIDE_DIVISORS``; checked without torch).
    """
    if config.task == "segmentation" and image_size is not None:
        if config.uses_own_data:
            check_side(config.architecture, image_size, "data.image_size")
        else:  # the generated shapes: their side is the dataset's size option
            check_side(config.architecture, image_size, "size", where=f"dataset {config.dataset!r}: ")
    if config.weights is not None and config.task == "segmentation":
        from activelabel.campaign.segmentation_round import segmentation_spec
        from activelabel.pipeline.segmentation_model import build_segmentation_model, load_segmentation_weights

        spec = segmentation_spec(config, in_channels, num_classes)
        load_segmentation_weights(build_segmentation_model(spec), spec.weights)
    elif config.weights is not None:
        from activelabel.pipeline.model_file import build_model_for_training

        build_model_for_training(model_spec(config, in_channels, num_classes, image_size))
    elif config.task == "classification" and config.architecture in GAL_LAYOUTS:
        model_spec(config, in_channels, num_classes, image_size)  # its size checks
