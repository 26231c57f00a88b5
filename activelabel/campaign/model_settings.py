"""The campaign's model and training settings, as the pipeline's own objects."""

from __future__ import annotations

from activelabel.campaign.config import CampaignConfig
from activelabel.pipeline.model import ModelSpec
from activelabel.pipeline.training import TrainingConfig


def model_spec(config: CampaignConfig, in_channels: int, num_classes: int) -> ModelSpec:
    """The network a round trains, built for the campaign's channels and label set."""
    return ModelSpec(
        in_channels=in_channels, num_classes=num_classes, architecture=config.architecture,
        dropout=config.dropout, weights=config.weights, freeze_backbone=config.freeze_backbone,
        mean=config.mean, std=config.std,
    )


def training_config(config: CampaignConfig, n_labeled: int | None = None) -> TrainingConfig:
    """The training recipe of a round on ``n_labeled`` labels.

    ``weight_decay_scale`` gives weight decay ``scale / n_labeled`` (Gal et al. 2017);
    ``fixed_epochs`` drops the 200-step minimum so ``epochs`` is exactly what runs.
    """
    extra: dict = {}
    if config.weight_decay_scale is not None and n_labeled:
        extra["weight_decay"] = config.weight_decay_scale / n_labeled
    if config.fixed_epochs:
        extra["min_steps"] = 0
    return TrainingConfig(epochs=config.epochs, augment=config.augmentation, **extra)


def check_model(config: CampaignConfig, in_channels: int, num_classes: int) -> None:
    """Build the network once (and read its weights file) before anything is written.

    Raises ``WeightsFileError`` naming the file when it does not fit the architecture (for a
    segmentation campaign: the U-Net of ``segmentation_round.segmentation_spec``).
    """
    from activelabel.pipeline.model_file import build_model_for_training

    if config.weights is not None and config.task == "segmentation":
        from activelabel.campaign.segmentation_round import segmentation_spec
        from activelabel.pipeline.segmentation_model import build_segmentation_model, load_segmentation_weights

        spec = segmentation_spec(config, in_channels, num_classes)
        load_segmentation_weights(build_segmentation_model(spec), spec.weights)
    elif config.weights is not None:
        build_model_for_training(model_spec(config, in_channels, num_classes))
