"""Training recipes: named sets of training settings a user picks as one (``recipe = "gal2017"``).

A recipe has two parts:

- **defaults** for ordinary settings (architecture, epochs, ...), filled in by
  :func:`recipe_defaults` wherever settings are read (``compare`` options and experiment files,
  campaign files) for the keys the user left unset, so an explicit setting always wins and the
  stored campaign settings show the values that ran;
- **the training loop's own choices** (batch size, optimizer, where weight decay goes), applied
  by ``campaign.model_settings.training_config`` from ``CampaignConfig.recipe``.

``gal2017`` is Gal, Islam & Ghahramani 2017 (Deep Bayesian Active Learning with Image Data), MNIST:
the paper's CNN (``gal_cnn``), batches of 128, Adam (lr 1e-3, no decay), trained from scratch each
round for a fixed number of epochs, and the loss ``cross-entropy + c / N * sum(W ** 2)`` over the
hidden dense layer's weights only (their Keras code: ``Dense(..., W_regularizer=l2(c / N))``,
``c = 3.5``, ``N`` the labels trained on). The paper does not state the epochs; the authors' code
file sets 5 with the comment "use a large number of epochs", which at 20 labels and batches of 128
is 5 optimizer steps: we default to 50 (50 steps at 20 labels, 400 at 1,000).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from activelabel.errors import ConfigError

#: Settings each recipe fills in when the user left them unset (None or absent).
RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "gal2017": {"architecture": "gal_cnn", "epochs": 50, "fixed_epochs": True, "weight_decay_scale": 3.5},
}
#: The training loop's batch size under each recipe (the default recipe: TrainingConfig's 32).
RECIPE_TRAINING_BATCH = {"gal2017": 128}


def recipe_defaults(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` (CampaignConfig keys) with the recipe's defaults filled in where unset.

    Settings without a ``recipe`` come back unchanged (a copy). Raises ``ConfigError`` for an
    unknown recipe.
    """
    values = dict(settings)
    recipe = values.get("recipe")
    if recipe is None:
        return values
    if recipe not in RECIPE_DEFAULTS:
        raise ConfigError(f"unknown training recipe {recipe!r}; choose one of: {', '.join(RECIPE_DEFAULTS)} (or none)")
    for key, value in RECIPE_DEFAULTS[recipe].items():
        if values.get(key) is None:
            values[key] = value
    return values
