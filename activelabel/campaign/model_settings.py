"""The campaign's model and training settings, as the pipeline's own objects."""

from __future__ import annotations

from activelabel.campaign.config import CampaignConfig
from activelabel.pipeline.model import ModelSpec
from activelabel.pipeline.training import TrainingConfig


def model_spec(config: CampaignConfig, in_channels: int, num_classes: int) -> ModelSpec:
    """The network a round trains, built for the campaign's channels and label set."""
    return ModelSpec(in_channels=in_channels, num_classes=num_classes)


def training_config(config: CampaignConfig) -> TrainingConfig:
    return TrainingConfig(epochs=config.epochs)
