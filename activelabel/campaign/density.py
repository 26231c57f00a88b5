"""The round's feature density (DDU, Mukhoti et al. 2021): fitted on the labeled set, read on the pool.

Each active round fits one Gaussian per class on the penultimate-layer features of the samples
the round's model was trained on (its first member for an ensemble), from a deterministic pass.
It gives every pool sample ``log q(z)`` (stored as ``score.log_density``), the ``density``
strategy's score ``-log q(z)``, and an out-of-distribution flag (``score.ood``): ``log q(z)``
below the ``ood_percentile``-th percentile of the labeled set's *out-of-fold* log densities
(:func:`~activelabel.acquisition.density.out_of_fold_log_densities`; in-sample densities are
optimistic and would flag most of the pool while classes are small).

The fit is deterministic given the checkpoint and the labels, so it is recomputed by a resumed
round rather than stored (a resnet18's 512-dimensional class covariances would be 10 MB a round);
its summary is stored in ``round.uncertainty["density"]``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from activelabel.acquisition.density import GaussianDensity, fit_class_gaussians, out_of_fold_log_densities
from activelabel.campaign.pixels import stream_probabilities
from activelabel.errors import InvalidArrayError

log = logging.getLogger(__name__)

#: Fewer labeled samples than this: no density (out-of-fold estimates need a few per fold).
MIN_LABELED = 4


@dataclass(frozen=True)
class RoundDensity:
    """The fitted density, its OOD threshold (nats) and the summary the round stores."""

    density: GaussianDensity
    threshold: float
    summary: dict

    def log_density(self, features: np.ndarray) -> np.ndarray:
        """``log q(z)`` per row of ``features`` ``[b, D]``: float64 ``[b]`` nats."""
        return self.density.log_density(features)


def fit_round_density(
    model: nn.Module | Sequence[nn.Module],
    store,
    uris: Sequence[str],
    classes: np.ndarray,
    num_classes: int,
    *,
    percentile: float,
    device: torch.device,
    seed: int,
    workers: int,
    problems: list[tuple[str, str]],
) -> RoundDensity | None:
    """Fit the density on the labeled samples ``uris`` with class indices ``classes`` ``[L]``.

    Returns None (and logs why) when fewer than :data:`MIN_LABELED` labeled images are readable
    or the features admit no fit; the caller stores no density then. Unreadable files are
    appended to ``problems``.
    """
    first = model[0] if isinstance(model, (list, tuple)) else model
    rows, chunks = [], []
    for positions, _probs, feats in stream_probabilities(first, store, list(uris), samples=0, device=device, seed=0,
                                                         workers=workers, problems=problems, features=True):
        rows.append(positions)
        chunks.append(feats)
    if not rows or sum(len(r) for r in rows) < MIN_LABELED:
        log.info("No feature density this round: fewer than %d readable labeled images", MIN_LABELED)
        return None
    features = np.concatenate(chunks).astype(np.float64)
    labels = np.asarray(classes, dtype=np.int64)[np.concatenate(rows)]
    try:
        density = fit_class_gaussians(features, labels, num_classes)
        reference = out_of_fold_log_densities(features, labels, num_classes, seed=seed)
    except InvalidArrayError as error:
        log.warning("No feature density this round: %s", error)
        return None
    threshold = float(np.percentile(reference, percentile))
    summary = {
        "labeled": int(len(labels)),
        "dim": density.dim,
        "classes": int(density.classes.size),
        "num_classes": int(num_classes),
        "percentile": float(percentile),
        "threshold": threshold,
        "pooled_classes": int(density.pooled.sum()),
        "jittered_classes": int((density.jitters > 0).sum()),
        "smallest_class": int(np.bincount(labels, minlength=num_classes)[density.classes].min()),
    }
    return RoundDensity(density, threshold, summary)
