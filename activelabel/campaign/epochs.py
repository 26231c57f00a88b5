"""The training minimum in words: when a round trains more epochs than ``epochs`` asks.

Every round takes at least ``TrainingConfig.min_steps`` optimizer steps (200) unless the
campaign sets ``fixed_epochs``: a small labeled set gives few batches per epoch, so a low
``epochs`` is raised until that many steps are taken (``pipeline.training.planned_epochs``).
The CLI says so once when a run starts with ``--epochs`` set low enough to be raised.
"""

from __future__ import annotations

from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.model_settings import training_config
from activelabel.pipeline.architectures import BATCH_NORM_ARCHITECTURES
from activelabel.pipeline.training_plan import planned_epochs


def labels_for_epochs(config: CampaignConfig) -> int | None:
    """The fewest labels on which ``config.epochs`` epochs already take the minimum number of
    steps (classification batches); None when nothing is raised (``fixed_epochs``)."""
    training = training_config(config)
    if config.fixed_epochs or training.min_steps <= 0:
        return None
    batches = -(-training.min_steps // max(config.epochs, 1))  # per epoch, to reach the minimum
    # The smallest count whose epoch takes that many steps: a last batch of one is skipped with batch norm.
    skips = _skips_batch_of_one(config) and training.batch_size > 1 and batches > 1
    return (batches - 1) * training.batch_size + (2 if skips else 1)


def _skips_batch_of_one(config: CampaignConfig) -> bool:
    """Whether the campaign's classifier skips a last batch of one (batch norm)."""
    return config.architecture in BATCH_NORM_ARCHITECTURES


def raised_epochs_note(config: CampaignConfig, labels: int | None = None, *, hint: str = "") -> str | None:
    """One line saying that rounds on fewer labels than :func:`labels_for_epochs` train more
    than ``config.epochs`` epochs, with what ``labels`` labels (the campaign's count when the
    run starts, if known) get; None when ``epochs`` is never raised for a campaign of that
    size, or for segmentation (its own training batch, and its demo relies on the minimum).
    ``hint`` is appended (e.g. how to train exactly ``epochs``)."""
    enough = labels_for_epochs(config)
    if config.task != "classification" or enough is None or (labels is not None and labels >= enough):
        return None
    training = training_config(config, labels)
    example = (f" (on {labels} labels: {planned_epochs(labels, training, skips_batch_of_one=_skips_batch_of_one(config))} epochs)" if labels else "")
    return (f"Rounds on fewer than {enough:,} labels train more than epochs = {config.epochs}: each round takes at "
            f"least {training.min_steps} optimizer steps of {training.batch_size} samples{example}{hint}.")
