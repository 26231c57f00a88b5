"""The training recipe's numbers and how many epochs and steps they make: no torch.

Split from :mod:`activelabel.pipeline.training` (the loop, which needs torch) so that the
settings checks and notes a command makes before it runs anything (``campaign.model_settings``,
``campaign.epochs``) answer without importing torch (trial 14 F7).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    # Small labeled sets give few steps per epoch; train at least this many steps.
    min_steps: int = 200
    # Random translations by up to 1/8 of each side (zero padding, then a random crop).
    augment: bool = False
    # With ``augment``, also flip half the images left-right (off: digits and text are not symmetric).
    augment_flip: bool = False
    # lambda of the loss term lambda * sum(W ** 2) over ``regularised_weights(model)`` (0: none).
    l2_penalty: float = 0.0


def steps_per_epoch(n_samples: int, config: TrainingConfig, *, skips_batch_of_one: bool) -> int:
    """Optimizer steps one epoch takes on ``n_samples``: its batches (``ceil(n_samples /
    batch_size)``), less a last batch of one sample when ``skips_batch_of_one`` (a model with
    batch norm, see ``pipeline.training.uses_batch_norm``, on at least 2 samples: the training
    loops skip such a batch, as BatchNorm cannot normalise it). The loops' own rule, so the
    200-step minimum counts the steps that run (trial 15 F4: 25 masks in batches of 8 planned 4
    steps an epoch, ran 3, and took 150 steps)."""
    full, last = divmod(n_samples, config.batch_size)
    skipped = skips_batch_of_one and last == 1 and n_samples >= 2
    return full + (1 if last and not skipped else 0)


def planned_epochs(n_samples: int, config: TrainingConfig, *, skips_batch_of_one: bool) -> int:
    """Epochs the loop will run: ``config.epochs``, or more so that ``min_steps`` optimizer steps
    are taken (steps per epoch as :func:`steps_per_epoch` counts them)."""
    per_epoch = max(1, steps_per_epoch(n_samples, config, skips_batch_of_one=skips_batch_of_one))
    return max(config.epochs, -(-config.min_steps // per_epoch))


def optimizer_steps(n_samples: int, config: TrainingConfig, *, skips_batch_of_one: bool) -> int:
    """Optimizer steps the loop takes on ``n_samples``: :func:`planned_epochs` times
    :func:`steps_per_epoch`; at least ``min_steps`` whenever an epoch takes a step."""
    per_epoch = steps_per_epoch(n_samples, config, skips_batch_of_one=skips_batch_of_one)
    return planned_epochs(n_samples, config, skips_batch_of_one=skips_batch_of_one) * per_epoch
