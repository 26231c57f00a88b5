"""A round's stored training (``round.training``) in words, for ``status`` and the report.

Read-only commands import this, not :mod:`activelabel.campaign.model_settings` (which writes the
record and imports torch). Rounds that trained no model (evaluation, cold start) and rounds
stored before the column existed have ``None``: they show nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

#: What the report's and status' ``epochs`` and ``steps`` columns mean.
COLUMNS_NOTE = (
    "epochs: the epochs each model of the round trained; the default recipe raises the campaign's epochs "
    "until at least 200 optimizer steps run, so rounds on few labels train more epochs than set "
    "(fixed_epochs or recipe gal2017 train exactly epochs). steps: optimizer steps (batches) per model."
)


def _int(training: Mapping | None, key: str) -> str:
    value = None if not training else training.get(key)
    return "" if value is None else f"{int(value):,}"


def training_cells(training: Mapping | None) -> tuple[str, str]:
    """(epochs, optimizer steps per model) as table cells; empty strings when nothing is stored."""
    return _int(training, "epochs"), _int(training, "steps")


def describe_training(training: Mapping | None, unit: str = "labels") -> str | None:
    """One sentence on what the round's training ran; None when nothing is stored. ``unit``:
    what the model learned from, "labels" or a segmentation round's "masks".

    E.g. "Training: 200 epochs (the campaign sets 40; raised to take at least 200 optimizer
    steps), 200 optimizer steps per model in batches of 32, on 16 labels (4 held out for
    calibration); Adam, learning rate 0.001, weight decay 0.0001; recipe default, 1 model."
    """
    if not training:
        return None
    epochs, steps = training.get("epochs"), training.get("steps")
    asked = training.get("requested_epochs")
    raised = (f" (the campaign sets {asked}; raised to take at least {training.get('min_steps')} optimizer steps)"
              if asked is not None and epochs is not None and epochs > asked else "")
    held = training.get("held_out") or 0
    held_text = f" ({held} held out for calibration)" if held else ""
    decay = training.get("weight_decay") or 0
    l2 = training.get("l2_penalty") or 0
    regular = ", ".join(part for part in (
        f"weight decay {decay:g}" if decay else "",
        f"L2 penalty {l2:.3g} x sum(W^2) on the hidden dense layer" if l2 else "",
    ) if part) or "no weight decay"
    members = training.get("members", 1)
    return (f"Training: {epochs} epochs{raised}, {steps:,} optimizer steps per model in batches of "
            f"{training.get('batch_size')}, on {training.get('trained_on')} {unit}{held_text}; Adam, learning rate "
            f"{training.get('learning_rate'):g}, {regular}; recipe {training.get('recipe', 'default')}, "
            f"{members} model{'s' if members != 1 else ''}.")
