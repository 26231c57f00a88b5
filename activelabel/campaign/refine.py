"""Refinement: re-score the pool's top candidates with many more MC passes before selecting.

Why. A top-k batch is only as reproducible as the scores at its top. Scored once with T
MC-dropout passes, a 10,000-image MNIST pool gave two different top-20 BALD batches under two
MC seeds (overlap 0.10-0.35 at T = 20, 0.85 at T = 500 head-only, which already cost 1.67x one
deterministic pass; BENCHMARKS.md). The noise that matters is only at the top: the images
that could enter the batch are a few hundred; the rest of the pool is ranked well enough by
T passes (Spearman >= 0.95 at T = 100). So the round scores the whole pool with T passes, takes
the ``M`` best by the strategy's score as candidates, and scores only those again with
``T_refine`` passes under a second, distinct mask stream. The batch is the top-k of the
candidates by their refined scores; the candidates' stored score and decomposition columns are
the refined ones; every other sample keeps its first-stage figures and is never selected ahead
of a candidate. ``M x T_refine`` image-passes cost a fraction of one pool pass when ``M`` is a
few per cent of the pool and the head is sampled alone (measured on that pool: T = 50 plus 100
candidates at 5,000 passes gave an overlap of 0.90 on each of three seed pairs it was not
chosen on, at a median 1.11x one deterministic pass; 7,000 passes gave 0.80-0.90 on three
others; T = 20 plus 200 candidates at 1,000 passes 0.75 at 1.12-1.18x; BENCHMARKS.md,
"Refinement").

Which strategies: those whose score is a statistic of the MC passes and that rank samples one
by one, read from the strategy registry as ``needs_samples and not batch_aware and not
needs_features`` (``bald``, ``mean_std``, ``variation_ratios``), and only when the round draws
MC-dropout passes (``mc_dropout``, ``ensemble+mc_dropout``). Not ``random`` (no model),
``density`` (deterministic features: re-scoring changes nothing), the batch-aware ones (they
choose the batch jointly from stored candidate passes) nor ``entropy``/``margin``/
``least_confidence`` (defined on the mean prediction, they work with one pass and are the
deterministic baselines), nor plain ``ensemble`` (no sampling: T_refine passes would repeat one).

Budget. Where only the head is sampled (``head_only``), ``refine_passes`` runs as set: the
candidates' backbone runs once and ``M x T_refine`` head passes are one matrix product. Where
every pass runs most of the network (``full_network``, ``naive``: the default small CNN has
dropout after its first convolution), ``M x T_refine`` image-passes are charged like the
first stage's, so an unset ``refine_passes`` is capped at the first stage's cost
(:func:`refinement_passes`; a number set by the user runs as set): on a 10,000-image pool at T = 20 with 200 candidates, 1,000
passes (scoring time doubles); on the digits demo (about 1,400 pool images, batch 20, so 200 candidates), about 140.

Seeding. The refinement's masks are seeded with :func:`refine_seed` of the round's seed, pass
``t`` and dropout layer ``k`` exactly like the first stage (shared by every sample of a pass,
:mod:`activelabel.pipeline.prediction`), so a candidate's refined score depends only on its
pixels, the weights and the round's seed: never on the chunk size or on which other samples
are candidates (tested).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from activelabel.acquisition import bald, confidence, predicted_class
from activelabel.acquisition.decomposition import uncertainty_decomposition
from activelabel.acquisition.registry import Strategy

#: Refinement passes when ``refine_passes`` is unset (capped where every pass runs the network).
DEFAULT_PASSES = 1000
#: Mixed into the round's seed for the refinement's mask stream (distinct from the first stage).
REFINE_STREAM = 0x5EF1
#: Candidates per chunk of the refinement: ``[T_refine, 64, C]`` float64 stays a few tens of MB
#: (T_refine = 5,000) and in cache far better than 256 (rescoring measured 2.3x faster).
REFINE_CHUNK = 64


def refines(strategy: Strategy, samples: int) -> bool:
    """Whether refinement applies: the round draws ``samples > 0`` MC-dropout passes and the
    strategy ranks samples one by one by a statistic of those passes (see the module docstring)."""
    return samples > 0 and strategy.needs_samples and not strategy.batch_aware and not strategy.needs_features


def refinement_passes(requested: int | None, mode: str, *, scored: int, samples: int, candidates: int) -> int:
    """MC passes the refinement runs. ``requested`` (``refine_passes``) set: that many. Unset
    (None): :data:`DEFAULT_PASSES` in ``head_only`` mode; otherwise at most the first stage's
    image-passes spread over the candidates (``scored x samples // candidates``), and never
    fewer than ``2 x samples`` (fewer passes than the first stage would only redraw its noise)."""
    if requested is not None:
        return requested
    if mode == "head_only" or candidates <= 0:
        return DEFAULT_PASSES
    return min(DEFAULT_PASSES, max(2 * samples, scored * samples // candidates))


def refine_seed(seed: int) -> int:
    """The mask seed of the refinement stage of a round seeded ``seed``: a stream of its own
    (SeedSequence of (seed, :data:`REFINE_STREAM`)), so the refined passes are fresh draws."""
    state = np.random.SeedSequence([seed % (1 << 64), REFINE_STREAM]).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def choose_candidates(values: np.ndarray, positions: np.ndarray, count: int) -> np.ndarray:
    """Pool positions of the ``count`` highest first-stage ``values`` (float ``[n]``, one per
    position of int ``[n]`` ``positions``; ties: lower position first), ascending. Fewer when
    ``n < count``."""
    values = np.asarray(values, dtype=np.float64)
    positions = np.asarray(positions, dtype=np.int64)
    order = np.lexsort((positions, -values))[: max(0, count)]
    return np.sort(positions[order])


@dataclass
class Refined:
    """Refined figures of the candidates, one entry per candidate, aligned with ``positions``
    (int64 pool positions, ascending): the strategy's ``values``, the ``predicted`` class and its
    ``confidence``, and the decomposition ``total``/``aleatoric``/``epistemic`` (nats), all
    from ``passes`` passes seeded :func:`refine_seed`."""

    positions: np.ndarray
    values: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
    total: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray
    passes: int

    def ranked(self) -> np.ndarray:
        """Indices into this object's arrays, best refined score first (ties: lower position)."""
        return np.lexsort((self.positions, -self.values))

    def plan(self, sample_ids: Sequence[int]) -> dict:
        """The round's ``batch_plan``: every candidate's sample id (``sample_ids[position]``)
        in refined rank order with its refined score. The selection step takes its head, so
        a non-candidate is never selected ahead of a candidate."""
        order = self.ranked()
        return {"sample_ids": [int(sample_ids[int(self.positions[i])]) for i in order],
                "scores": [float(self.values[i]) for i in order], "refined": True}

    def summary(self) -> dict:
        """What ran, for ``round.uncertainty["refined"]``."""
        return {"candidates": int(len(self.positions)), "passes": int(self.passes)}


def rescore(strategy: Strategy, chunks: Iterable[tuple[np.ndarray, np.ndarray]], passes: int) -> Refined:
    """Reduce ``(positions [b], probabilities [S, b, C])`` chunks of the refinement stage to
    :class:`Refined` (the strategy's scores and the decomposition of each candidate). The
    strategies that refine are deterministic functions of the probabilities (no ``rng``)."""
    parts: list[tuple[np.ndarray, ...]] = []
    for positions, probs in chunks:
        split = uncertainty_decomposition(probs)
        mean = np.mean(probs, axis=0, dtype=np.float64)[None]  # class and confidence read the mean only
        # BALD is the decomposition's epistemic part (both H[mean] - mean H, never below 0): reuse
        # it rather than take every pass's entropy twice (the costliest step at T_refine passes).
        values = split.epistemic if strategy.score is bald else strategy.score(probs)
        parts.append((np.asarray(positions, dtype=np.int64), np.asarray(values, dtype=np.float64),
                      predicted_class(mean), confidence(mean), split.total, split.aleatoric, split.epistemic))
    if not parts:
        empty = np.zeros(0)
        return Refined(np.zeros(0, np.int64), empty, np.zeros(0, np.int64), empty, empty, empty, empty, passes)
    columns = [np.concatenate(c) for c in zip(*parts)]
    order = np.argsort(columns[0], kind="stable")
    return Refined(*(c[order] for c in columns), passes=passes)


def refine_pool(model, store, uris: Sequence[str], candidates: np.ndarray, *, strategy: Strategy, passes: int,
                seed: int, temperature: float, device, workers: int, problems: list,
                batch_size: int = REFINE_CHUNK) -> Refined:
    """Re-score the pool samples at ``candidates`` (positions into ``uris``) with ``passes``
    MC passes seeded :func:`refine_seed` ``(seed)``, at the acquisition ``temperature``; the
    candidates stream through the store like the pool (unreadable ones are added to ``problems``
    and dropped). ``model``: one model or an ensemble's members, as for the first stage."""
    from activelabel.campaign.pixels import stream_probabilities

    candidates = np.asarray(candidates, dtype=np.int64)
    stream = stream_probabilities(model, store, [uris[int(p)] for p in candidates], samples=passes, device=device,
                                  seed=refine_seed(seed), workers=workers, problems=problems,
                                  batch_size=batch_size, temperature=temperature)
    return rescore(strategy, ((candidates[local], probs) for local, probs in stream), passes)
