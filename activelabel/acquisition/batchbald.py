"""Batch-aware BALD: choose a whole batch at once so it does not spend labels twice.

Top-k BALD scores every sample alone; a pool that holds the same informative image five times
gets all five in one batch, and each copy after the first teaches almost nothing. Two remedies:

* :func:`batchbald_select` — greedy BatchBALD (Kirsch, van Amersfoort & Gal 2019). It grows the
  batch one point at a time, each time adding the point that maximises the *joint* mutual
  information ``I[y_1, ..., y_n; w]`` of the batch so far. A copy of a chosen point adds
  (almost) nothing to the joint, so it is not chosen again. Greedy is within ``1 - 1/e`` of the
  best batch because the joint MI is submodular.
* :func:`power_bald_select` / :func:`softmax_bald_select` — stochastic BALD (Kirsch, Farquhar,
  Atighehchian, Jesson, Branchaud-Charron & Gal 2021, "Stochastic Batch Acquisition"). It
  samples the batch without replacement with probabilities ``∝ BALD^β`` (power) or
  ``∝ exp(β BALD)`` (softmax), via the Gumbel-top-k trick: top-k of ``β log s + Gumbel`` or
  ``β s + Gumbel``. Cost: one BALD pass and a sort. Sampling alone does not keep two copies of
  one image apart, so a dedup guard skips candidates whose per-pass predictions are
  (near-)identical to an already chosen point (see :func:`stochastic_bald_select`).

Input convention: ``[S, N, C]`` probabilities as everywhere in this package, but with one
extra requirement that plain BALD does not have: pass ``s`` must be the *same* model draw
``w_s`` for every pool sample (an ensemble member, or MC dropout with one mask per pass shared
by the whole pool — batchbald_redux's "consistent MC dropout"). The joint
``p(y_1..y_n) = mean_s prod_i p_s(y_i)`` is only meaningful then. Independent masks per sample
leave single-sample BALD correct but make the joint (and the dedup guard) meaningless.

Everything here is numpy, float64, and deterministic for a given ``rng`` seed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from activelabel.acquisition.decomposition import uncertainty_decomposition
from activelabel.acquisition.selection import check_batch_size
from activelabel.acquisition.uncertainty import _entropy
from activelabel.acquisition.validation import as_probabilities
from activelabel.errors import ConfigError

#: Default number of sampled joint configurations ``M`` once exact enumeration gets too big.
DEFAULT_NUM_SAMPLES = 1000
#: Default L-infinity distance over ``[S, C]`` under which two samples count as duplicates.
DEFAULT_DEDUP_TOLERANCE = 1e-3
#: Largest ``configurations x candidates x C`` block held in memory at once (float64 elements).
_CHUNK_ELEMENTS = 1 << 20


class BatchSelection(NamedTuple):
    """A ranked batch: ``indices`` int64 ``[k]`` into the pool (rank 0 first), ``scores`` float64 ``[k]``.

    What ``scores`` means depends on the selector and is stated in its docstring.
    """

    indices: np.ndarray
    scores: np.ndarray


def as_generator(rng: np.random.Generator | None) -> np.random.Generator:
    """``rng`` itself, or a fresh unseeded generator for ``None``; anything else is a ``TypeError``.

    The round always passes a seeded generator so that a batch can be reproduced.
    """
    if rng is None:
        return np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            "rng must be a numpy.random.Generator, e.g. np.random.default_rng(seed); "
            f"got {type(rng).__name__}"
        )
    return rng


class _JointState:
    """The joint distribution of the labels of the points chosen so far, exact or sampled.

    Exact: ``weights[j, s] = prod_i p_s(y_i = config_j)`` for all ``J = C^n`` configurations.
    Sampled: ``M`` configurations drawn from the joint (configuration ``m`` drawn under model
    ``s_m = m mod S``, stratified), ``weights[m, s] = prod_i p_s(y_i^m) / scale_m`` with
    ``log_scale[m]`` kept apart so long batches do not underflow.
    Both are kept up to date from the first pick, so switching costs nothing.
    """

    def __init__(self, s: int, c: int, num_samples: int, max_exact: int, rng: np.random.Generator):
        self.s, self.c = s, c
        self.max_exact = max_exact
        self.rng = rng
        self.n = 0
        self.exact: np.ndarray | None = np.ones((1, s))  # [J, S]
        # Round M up to a multiple of S: every pass draws the same number of configurations, so
        # the draws follow the mixture p(y) = mean_s p_s(y) exactly (stratified sampling).
        m = -(-num_samples // s) * s
        self.model_of_sample = np.arange(m) % s  # [M]
        self.sampled = np.ones((m, s))  # [M, S]
        self.log_scale = np.zeros(m)  # [M]

    def add(self, p_point: np.ndarray) -> None:
        """Condition on one more chosen point, ``p_point`` ``[S, C]``."""
        self.n += 1
        if self.exact is not None and self.c**self.n <= self.max_exact:
            # [J, S] x [S, C] -> [J, C, S] -> [J*C, S]
            self.exact = (self.exact[:, None, :] * p_point.T[None, :, :]).reshape(-1, self.s)
        else:
            self.exact = None
        # Draw y^m ~ p_{s_m}(y | x) for every sampled configuration (inverse CDF).
        cdf = np.cumsum(p_point, axis=1)  # [S, C]
        cdf[:, -1] = 1.0
        u = self.rng.random(self.model_of_sample.size)
        y = np.empty(u.size, dtype=np.int64)
        for s in range(self.s):
            rows = self.model_of_sample == s
            y[rows] = np.searchsorted(cdf[s], u[rows], side="right")
        np.minimum(y, self.c - 1, out=y)
        self.sampled *= p_point[:, y].T  # [M, S]
        peak = self.sampled.max(axis=1)
        peak = np.where(peak > 0, peak, 1.0)
        self.sampled /= peak[:, None]
        self.log_scale += np.log(peak)

    def joint_entropies(self, flat: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """``H[y_chosen, y_x]`` in nats for each candidate ``x``; ``flat`` is ``[S, N, C]``.

        Exact: ``-sum_{j,c} P log P`` with ``P[j, c] = mean_s w[j, s] p_s(c)``.
        Sampled (importance-weighted, as batchbald_redux): ``(1/M) sum_m sum_c
        P[m, c] / Q[m] * (-log P[m, c])`` with ``Q[m] = mean_s w[m, s]``. Because
        ``sum_c P[m, c] = Q[m]``, the configurations' scale factors add the same constant
        ``-(1/M) sum_m log_scale[m]`` to every candidate and are applied once.
        """
        weights = self.exact if self.exact is not None else self.sampled
        rows = weights.shape[0]
        if self.exact is not None:
            row_weights = np.ones(rows)
            offset = 0.0
        else:
            row_weights = 1.0 / (weights.mean(axis=1) * rows)  # 1 / (M Q[m])
            offset = -float(self.log_scale.mean())
        out = np.empty(candidates.size)
        step = max(1, _CHUNK_ELEMENTS // (rows * self.c))
        tiny = np.finfo(np.float64).tiny
        for start in range(0, candidates.size, step):
            idx = candidates[start : start + step]
            block = flat[:, idx, :].reshape(self.s, -1)  # [S, b*C]
            p = weights @ block  # [rows, b*C], S x the joint probabilities
            p *= 1.0 / self.s
            logp = np.maximum(p, tiny)  # 0 log 0 = 0: p = 0 gives 0 * log(tiny) = 0
            np.log(logp, out=logp)
            logp *= p
            per_row = logp.reshape(rows, idx.size, self.c).sum(axis=2)  # [rows, b]
            out[start : start + step] = offset - row_weights @ per_row
        return out


def batchbald_select(
    probs: ArrayLike,
    batch_size: int,
    *,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    max_exact_configurations: int | None = None,
    candidates: int | None = None,
    rng: np.random.Generator | None = None,
) -> BatchSelection:
    """Greedy BatchBALD (Kirsch et al. 2019): the batch maximising ``I[y_1..y_k; w]``.

    ``probs``: ``[S, N, C]`` probabilities with passes shared across samples (module docstring).
    Returns a :class:`BatchSelection` of ``k = batch_size`` distinct pool indices in pick order
    and their *marginal gains* in nats: ``scores[i] = I[y_1..y_{i+1}; w] - I[y_1..y_i; w]``, so
    ``scores[0]`` is the BALD score of the first pick (always the argmax of BALD) and
    ``scores.sum()`` is the batch's joint mutual information.

    Joint entropy: exact while the ``C^n`` label configurations of the ``n`` points already
    chosen number at most ``max_exact_configurations`` (default ``num_samples``); beyond, it is
    estimated from ``num_samples`` configurations (rounded up to a multiple of S) drawn from
    the joint (stratified over passes, importance-weighted as in batchbald_redux), which costs ``O(num_samples · S · N · C)`` per
    pick and makes later gains estimates (seeded by ``rng``). Ties go to the lower pool index.

    ``candidates``: restrict the search to the ``candidates`` highest-BALD samples (at least
    ``batch_size``). A point's gain can never exceed its own BALD score (conditioning on more
    labels only removes information), so low-BALD points can only win once every high-BALD
    point's gain has collapsed; restricting to the top ``m`` bounds the cost on big pools
    (cost per pick ∝ ``m`` instead of ``N``). ``None`` searches the whole pool.

    Raises :class:`~activelabel.errors.SelectionSizeError` for a bad ``batch_size``,
    :class:`~activelabel.errors.InvalidProbabilitiesError` for bad ``probs``,
    :class:`~activelabel.errors.ConfigError` for non-positive ``num_samples``/``candidates``,
    ``TypeError`` for an ``rng`` that is not a ``numpy.random.Generator``.
    """
    p = as_probabilities(probs)
    s, n, c = p.shape
    k = check_batch_size(batch_size, n)
    rng = as_generator(rng)
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ConfigError(f"BatchBALD num_samples must be a positive integer; got {num_samples!r}")
    max_exact = num_samples if max_exact_configurations is None else int(max_exact_configurations)

    epistemic = uncertainty_decomposition(p).epistemic  # [N]
    conditional = _entropy(p).mean(axis=0)  # [N], E_w H[y | x, w]
    if candidates is None:
        pool = np.arange(n)
    else:
        if isinstance(candidates, bool) or not isinstance(candidates, (int, np.integer)) or candidates < 1:
            raise ConfigError(f"BatchBALD candidates must be a positive integer; got {candidates!r}")
        m = min(n, max(k, int(candidates)))
        # Highest BALD first (ties -> lower index), then back in pool order for tie-breaking.
        pool = np.sort(np.argsort(-epistemic, kind="stable")[:m])

    state = _JointState(s, c, num_samples, max_exact, rng)
    chosen: list[int] = []
    gains: list[float] = []
    taken = np.zeros(pool.size, dtype=bool)
    previous = 0.0  # joint MI of the batch so far
    chosen_conditional = 0.0
    for step in range(k):
        if step == 0:
            total = epistemic[pool].copy()  # joint MI of a single point is its BALD score
        else:
            joint = state.joint_entropies(p, pool)
            total = joint - chosen_conditional - conditional[pool]
        total[taken] = -np.inf
        best = int(np.argmax(total))  # first maximum -> lowest pool index among ties
        index = int(pool[best])
        taken[best] = True
        chosen.append(index)
        gains.append(float(total[best]) - previous)
        previous = float(total[best])
        chosen_conditional += float(conditional[index])
        if step + 1 < k:
            state.add(p[:, index, :])
    return BatchSelection(np.asarray(chosen, dtype=np.int64), np.asarray(gains, dtype=np.float64))


def stochastic_bald_select(
    probs: ArrayLike,
    batch_size: int,
    *,
    mode: str,
    coldness: float = 1.0,
    dedup_tolerance: float | None = DEFAULT_DEDUP_TOLERANCE,
    rng: np.random.Generator | None = None,
) -> BatchSelection:
    """Stochastic BALD (Kirsch et al. 2021): sample a batch ∝ ``BALD^β`` or ``exp(β BALD)``.

    ``mode`` is ``"power"`` (key ``β log BALD + Gumbel``) or ``"softmax"`` (key
    ``β BALD + Gumbel``); ``coldness`` is ``β >= 0`` (the paper's default is 1; ``β -> ∞``
    tends to top-k BALD, ``β = 0`` is uniform random). Zero-BALD samples get
    ``log(tiny) ≈ -708`` in power mode, so they come after every informative one.

    Dedup guard: walking down the perturbed ranking, a candidate whose ``[S, C]`` per-pass
    predictions lie within ``dedup_tolerance`` (max absolute difference over passes and classes)
    of an already chosen point is deferred; deferred candidates fill the batch only if the pool
    runs out of distinct ones, so ``k`` distinct indices always come back. ``None`` turns the
    guard off; ``0`` skips exact duplicates only. With passes shared across the pool (module
    docstring), two copies of one image give identical rows.

    Returns a :class:`BatchSelection`: ``k`` distinct indices in pick order and the
    *unperturbed* BALD scores (nats) of the picks. Deterministic for a seeded ``rng``.
    Raises :class:`~activelabel.errors.SelectionSizeError`,
    :class:`~activelabel.errors.InvalidProbabilitiesError`,
    :class:`~activelabel.errors.ConfigError` (unknown ``mode``, negative or non-finite
    ``coldness`` or ``dedup_tolerance``) and ``TypeError`` for a bad ``rng``.
    """
    p = as_probabilities(probs)
    n = p.shape[1]
    k = check_batch_size(batch_size, n)
    rng = as_generator(rng)
    if mode not in ("power", "softmax"):
        raise ConfigError(f"stochastic BALD mode must be 'power' or 'softmax'; got {mode!r}")
    beta = float(coldness)
    if not np.isfinite(beta) or beta < 0:
        raise ConfigError(f"stochastic BALD coldness must be a finite number >= 0; got {coldness!r}")
    if dedup_tolerance is not None and (not np.isfinite(dedup_tolerance) or dedup_tolerance < 0):
        raise ConfigError(
            f"dedup_tolerance must be a finite number >= 0 or None; got {dedup_tolerance!r}"
        )

    scores = uncertainty_decomposition(p).epistemic
    if mode == "power":
        base = np.log(np.maximum(scores, np.finfo(np.float64).tiny))
    else:
        base = scores
    keys = beta * base + rng.gumbel(size=n)
    order = np.argsort(-keys, kind="stable")

    picked: list[int] = []
    deferred: list[int] = []
    rows = np.empty((k,) + p[:, 0, :].shape)  # [k, S, C] per-pass predictions of the picks
    for index in order:
        if len(picked) == k:
            break
        row = p[:, index, :]
        if dedup_tolerance is not None and picked:
            distance = np.abs(rows[: len(picked)] - row).max(axis=(1, 2))  # L-inf to each pick
            if (distance <= dedup_tolerance).any():
                deferred.append(int(index))
                continue
        rows[len(picked)] = row
        picked.append(int(index))
    picked.extend(deferred[: k - len(picked)])
    indices = np.asarray(picked, dtype=np.int64)
    return BatchSelection(indices, scores[indices])


def power_bald_select(
    probs: ArrayLike,
    batch_size: int,
    *,
    coldness: float = 1.0,
    dedup_tolerance: float | None = DEFAULT_DEDUP_TOLERANCE,
    rng: np.random.Generator | None = None,
) -> BatchSelection:
    """PowerBALD (Kirsch et al. 2021): batch sampled ∝ ``BALD^coldness``, with the dedup guard.

    See :func:`stochastic_bald_select` for shapes, return value and errors.
    """
    return stochastic_bald_select(
        probs, batch_size, mode="power", coldness=coldness, dedup_tolerance=dedup_tolerance, rng=rng
    )


def softmax_bald_select(
    probs: ArrayLike,
    batch_size: int,
    *,
    coldness: float = 1.0,
    dedup_tolerance: float | None = DEFAULT_DEDUP_TOLERANCE,
    rng: np.random.Generator | None = None,
) -> BatchSelection:
    """SoftmaxBALD (Kirsch et al. 2021): batch sampled ∝ ``exp(coldness · BALD)``, with the dedup guard.

    See :func:`stochastic_bald_select` for shapes, return value and errors.
    """
    return stochastic_bald_select(
        probs, batch_size, mode="softmax", coldness=coldness, dedup_tolerance=dedup_tolerance, rng=rng
    )
