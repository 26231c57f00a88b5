"""The segmentation architectures' names and the image sides each one can take: no torch.

A U-Net halves the image side at each down-sampling step and doubles it back on the way up, so
the sides must be a multiple of 2 ** steps (``unet_small``: 2 steps, 4; ``smp_unet``: 5, 32).
This table is the one rule: the network's own forward check
(:mod:`activelabel.pipeline.segmentation_model`) and the settings check a command makes before
anything is written (:func:`activelabel.campaign.model_settings.check_model`) both read it, so
a campaign whose images a U-Net cannot take is refused at creation, not rounds later (trial 15 F3).
"""

from __future__ import annotations

from activelabel.errors import ConfigError

UNET_SMALL = "unet_small"
SMP_UNET = "smp_unet"
#: Image sides must be a multiple of this, per architecture.
SIDE_DIVISORS = {UNET_SMALL: 4, SMP_UNET: 32}
SEGMENTATION_ARCHITECTURES = tuple(SIDE_DIVISORS)


def fitting_sides(side: int, divisor: int) -> tuple[int, ...]:
    """The multiples of ``divisor`` nearest ``side``: the one below (when at least ``divisor``)
    and the one above; ``side`` alone when it fits already."""
    if side % divisor == 0:
        return (side,)
    below = (side // divisor) * divisor
    return tuple(s for s in (below, below + divisor) if s >= divisor)


def check_side(architecture: str, side: int, key: str, where: str = "") -> None:
    """Raise ``ConfigError`` naming ``key`` (where the side is set, e.g. ``data.image_size``),
    the side and the valid ones nearest it when ``architecture`` cannot take images of ``side``;
    ``where`` goes in front (e.g. the dataset the key belongs to)."""
    divisor = SIDE_DIVISORS[architecture]
    if side % divisor:
        valid = " or ".join(str(s) for s in fitting_sides(side, divisor))
        raise ConfigError(
            f"{where}{key} = {side} does not fit {architecture}, which needs image sides divisible by {divisor}; "
            f"set {key} to {valid}"
        )
