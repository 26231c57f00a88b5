"""Split a sample's predictive uncertainty into its aleatoric and epistemic parts.

For ``[S, N, C]`` probabilities (S stochastic passes: MC-dropout masks or ensemble members):

* total     = H[mean_s p_s]          (predictive entropy: everything the model does not know);
* aleatoric = mean_s H[p_s]          (expected entropy of one pass: noise a model cannot remove);
* epistemic = total - aleatoric      (BALD, the mutual information I[y; w | x]: what more labels
                                      could remove).

All three are in nats, float64 ``[N]``. ``total`` lies in [0, log C]; by Jensen's inequality
(entropy is concave) ``0 <= epistemic <= total``, so ``aleatoric`` lies in [0, total] too.
``epistemic`` is exactly what :func:`activelabel.acquisition.bald` returns.

References: Houlsby et al. 2011 (BALD); Gal, Islam & Ghahramani 2017 ("Deep Bayesian Active
Learning with Image Data"); Depeweg et al. 2018 (the aleatoric/epistemic split by entropy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from activelabel.acquisition.uncertainty import _entropy
from activelabel.acquisition.validation import as_probabilities

#: Float error may make ``total - aleatoric`` very slightly negative (a few ulps of log C);
#: values down to ``-NEGATIVE_TOLERANCE`` nats are read as 0. Anything more negative cannot
#: come from valid probabilities (Jensen) and means a bug, so it raises.
NEGATIVE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Decomposition:
    """Per-sample uncertainty in nats, each float64 ``[N]``; ``total = aleatoric + epistemic``."""

    total: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray


def uncertainty_decomposition(probs: ArrayLike) -> Decomposition:
    """Total, aleatoric and epistemic uncertainty of each sample of a ``[S, N, C]`` tensor.

    Reduces S and C; returns a :class:`Decomposition` of three float64 ``[N]`` arrays in nats
    (see the module docstring for the definitions). ``S = 1`` (a deterministic model) gives
    epistemic = 0 and aleatoric = total: one pass cannot tell the two apart, which is why softmax
    entropy alone is not a measure of what the model does not know.

    Numerically safe: ``0 log 0 = 0``; a sample whose passes are all identical gets exactly
    epistemic = 0; an epistemic part that float error pushes below 0 by at
    most :data:`NEGATIVE_TOLERANCE` is set to 0 and the aleatoric part to the total, so the
    identity ``total == aleatoric + epistemic`` still holds (to float rounding, ~1e-15).
    Raises :class:`~activelabel.errors.InvalidProbabilitiesError` for malformed input
    (see :func:`~activelabel.acquisition.as_probabilities`) and ``ArithmeticError`` if the
    epistemic part is more negative than the tolerance (impossible for valid probabilities).
    """
    p = as_probabilities(probs)
    total = _entropy(p.mean(axis=0))
    aleatoric = _entropy(p).mean(axis=0)
    epistemic = total - aleatoric
    if epistemic.size and float(epistemic.min()) < -NEGATIVE_TOLERANCE:
        worst = int(np.argmin(epistemic))
        raise ArithmeticError(
            f"epistemic uncertainty of sample {worst} is {epistemic[worst]:.3g} nats < 0; "
            "the probabilities cannot be valid"
        )
    # Identical passes carry no disagreement: make that exactly 0 (their mean may differ from
    # each pass in the last bit, which would leave ~1e-17 nats of spurious epistemic part).
    agree = np.all(p == p[:1], axis=(0, 2)) if p.shape[1] else np.zeros(0, dtype=bool)
    noise = (epistemic < 0) | agree
    epistemic = np.where(noise, 0.0, epistemic)
    aleatoric = np.where(noise, total, aleatoric)
    return Decomposition(total=total, aleatoric=aleatoric, epistemic=epistemic)
