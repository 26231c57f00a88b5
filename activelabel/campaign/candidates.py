"""The candidate set a batch-aware strategy chooses its batch from, built while streaming.

Batch-aware strategies (BatchBALD, PowerBALD, SoftmaxBALD) need the ``[S, N, C]``
probabilities, which the round never holds for the whole pool. While chunks stream by,
:class:`Candidates` keeps the top ``m`` samples by BALD (``m = max(10 k, 500)``, see
:func:`candidate_count`) with their ``[S, m, C]`` probabilities; nothing else is kept.

Near-identical samples (the same image saved twice, re-encoded, a frame of a still video) have
near-identical per-pass predictions because every pass uses one dropout mask for the whole
pool. :func:`distinct` keeps one of each such group before the strategy runs, so a batch never
spends two labels on them. BatchBALD alone does not guarantee that: a second label of the same
image still carries information about the weights when each pass is itself unsure (the
aleatoric part), and with a weak early model that gain can beat every other sample's.
"""

from __future__ import annotations

import numpy as np

from activelabel.acquisition.batchbald import DEFAULT_DEDUP_TOLERANCE


def candidate_count(batch_size: int) -> int:
    """Candidates a batch-aware strategy chooses among: ``max(10 k, 500)``."""
    return max(10 * batch_size, 500)


class Candidates:
    """A running top-``m`` of the pool by BALD, with their ``[S, m, C]`` probabilities.

    Ties go to the lower pool position, and the kept samples are held in position order, so
    the set and its order do not depend on the chunk size or on the order chunks arrive in.
    Memory: ``S x (m + chunk) x C`` floats.
    """

    def __init__(self, m: int) -> None:
        self.m = m
        self.positions = np.zeros(0, dtype=np.int64)
        self.bald = np.zeros(0, dtype=np.float64)
        self.probs: np.ndarray | None = None

    def offer(self, positions: np.ndarray, bald: np.ndarray, probs: np.ndarray) -> None:
        """Add a chunk: pool ``positions`` [b], their BALD [b] and probabilities ``[S, b, C]``."""
        if not len(positions):
            return
        pos = np.concatenate([self.positions, np.asarray(positions, dtype=np.int64)])
        val = np.concatenate([self.bald, np.asarray(bald, dtype=np.float64)])
        p = probs if self.probs is None else np.concatenate([self.probs, probs], axis=1)
        keep = np.lexsort((pos, -val))[: self.m]
        keep = keep[np.argsort(pos[keep], kind="stable")]
        self.positions, self.bald, self.probs = pos[keep], val[keep], p[:, keep]


def distinct(probs: np.ndarray, bald: np.ndarray, *, tolerance: float = DEFAULT_DEDUP_TOLERANCE) -> np.ndarray:
    """Indices (ascending) of the samples to keep: one per group of near-identical samples.

    Walking from the highest BALD down (ties: lower index), a sample whose ``[S, C]`` per-pass
    predictions lie within ``tolerance`` (max absolute difference) of a kept one is dropped.
    ``probs``: ``[S, N, C]``; ``bald``: ``[N]``.
    """
    n = probs.shape[1]
    order = np.lexsort((np.arange(n), -np.asarray(bald, dtype=np.float64)))
    rows = np.transpose(probs, (1, 0, 2))  # [N, S, C]
    kept: list[int] = []
    for index in order:
        if kept and (np.abs(rows[kept] - rows[index]).max(axis=(1, 2)) <= tolerance).any():
            continue
        kept.append(int(index))
    return np.sort(np.asarray(kept, dtype=np.int64))
