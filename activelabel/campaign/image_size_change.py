"""Whether a stored campaign's ``data.image_size`` may change: for a segmentation campaign, yes,
until one of its rounds has trained a model.

Why (trial 15, F3): a campaign created by an older version with a side its U-Net cannot take
(now refused at setup, :mod:`activelabel.pipeline.segmentation_sizes`) failed at its first
training round, and the settings check then refused the size the error advised, so the campaign
could never train. Before a model is trained nothing stored depends on the size: the evaluation
and cold-start rounds only drew random images, and painted masks are stored at the image's full
size (resized to ``image_size`` when a model reads them). Once a round has a checkpoint, its
model, scores and predicted masks were made at the old size, so the size stays fixed; the
refusal says why. A classification campaign keeps it fixed (its rounds compare accuracies
measured at one size).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from activelabel.campaign.config import CampaignConfig
from activelabel.storage import ModelCheckpoint, Round, session_scope

SETTING = "image_size"


@dataclass(frozen=True)
class SizeVerdict:
    """``may_change``: settings that may differ from the stored ones this time (``{"image_size"}``
    or empty); ``why``: why the size may not change, for the refusal (empty when it may or
    did not change); ``line``: the one line saying it changed (empty when it did not)."""

    may_change: frozenset[str] = frozenset()
    why: str = ""
    line: str = ""


def first_trained_round(engine: Engine, campaign_id: int) -> int | None:
    """The index of the campaign's first round that stored a model checkpoint, or None."""
    with session_scope(engine) as session:
        return session.scalar(
            select(Round.index).join(ModelCheckpoint, ModelCheckpoint.round_id == Round.id)
            .where(Round.campaign_id == campaign_id).order_by(Round.index).limit(1))


def image_size_verdict(engine: Engine, campaign_id: int, stored: CampaignConfig,
                       config: CampaignConfig) -> SizeVerdict:
    """Whether ``config`` may change the stored campaign's image size (see the module's docstring)."""
    old, new = stored.image_size, config.image_size
    if old == new or stored.task != "segmentation" or config.task != "segmentation":
        return SizeVerdict()
    trained = first_trained_round(engine, campaign_id)
    if trained is not None:
        return SizeVerdict(why=(
            f"data.image_size of a segmentation campaign can change only until a round trains a model, and "
            f"round {trained} trained one on {old}x{old} images"))
    return SizeVerdict(may_change=frozenset({SETTING}), line=(
        f"Campaign {config.name!r}: data.image_size {old} -> {new}: images are resized to {new}x{new} pixels "
        "from now on (no round has trained a model yet; the stored masks are kept at full size)"))
