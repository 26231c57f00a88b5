"""Scoring a round's pool as shards, anywhere, and merging them as one process would (issue #11).

Scoring is a map over the pool followed by a merge. :func:`score_shard` is the map: a plain
function (no Prefect, no Dask) that a worker on any machine runs with a picklable
:class:`ShardRequest`. It loads the round's checkpoint (from the database, or from a
checkpoint file), opens the campaign's images lazily, streams its slice of the pool through
the same predictor the round uses, and returns per-sample columns (:class:`ShardScores`).
:func:`merge_shards` puts the slices back in pool order and :func:`shard_rows` turns them into
the score rows :func:`~activelabel.storage.bulk.write_scores` takes; :func:`top_k` is the
selection with the round's tie-breaking (higher score first, then lower sample id).

Why the result does not depend on the sharding:

- dropout masks are seeded per (seed, pass, layer) and shared by every sample
  (:func:`~activelabel.pipeline.prediction.predict_stream`), so a sample's probabilities do not
  depend on which shard or chunk it is in;
- shards are cut on chunk boundaries (:func:`plan_shards`), so every chunk holds the same
  samples as in one process, and floating point sums are the same bit for bit;
- a strategy that draws random numbers gets a generator seeded by (round seed, chunk index),
  never one stream that runs through the pool;
- every chunk is reduced by the same :class:`PoolScorer` the round's single-process scoring
  uses, with the feature density fitted once by the round and sent in the request;
- a batch-aware strategy's candidates (top BALD with their probabilities) are kept per shard
  and merged by :class:`~activelabel.campaign.candidates.Candidates`, whose set does not depend
  on the order chunks arrive in; the mean entropy is the sum of the same per-chunk sums.

The Dask fan-out (through Prefect's Dask task runner) lives in
:mod:`activelabel.flows.sharded`; this module runs without either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from activelabel.acquisition import PoolFeatures, confidence, get_strategy, predicted_class
from activelabel.acquisition.decomposition import uncertainty_decomposition
from activelabel.campaign.candidates import Candidates
from activelabel.campaign.config import CampaignConfig
from activelabel.errors import CampaignStateError, ConfigError

#: Images per chunk through the model (the round's own chunk size; shards are cut on it).
CHUNK = 256


@dataclass(frozen=True)
class ShardRequest:
    """Everything a worker needs to score one slice of a round's pool (picklable, small).

    ``uris[i]`` is pool position ``start + i``. The checkpoint comes from the database (the
    round's ``model_checkpoint`` rows; ``database_url`` None: the worker's
    ``$ACTIVELABEL_DATABASE_URL``, else ``flow_database_url``, the flow's own URL without its
    password; see :func:`open_worker_database`) unless ``checkpoint_path`` names a file written by
    :func:`save_round_checkpoint`. ``seed``, ``samples`` and ``temperature`` are the round's.
    ``density`` is the round's fitted feature density
    (:class:`~activelabel.campaign.density.RoundDensity`: class means, Cholesky factors and the
    OOD threshold; None: no density columns). ``candidates`` > 0 keeps that many BALD
    candidates of pool positions below ``selectable`` (batch-aware strategies).
    """

    config: dict
    round_id: int
    strategy: str
    start: int
    uris: tuple[str, ...]
    seed: int
    samples: int
    temperature: float = 1.0
    database_url: str | None = None
    checkpoint_path: str | None = None
    chunk: int = CHUNK
    workers: int = 0
    density: Any = None
    candidates: int = 0
    selectable: int | None = None
    flow_database_url: str | None = None


@dataclass
class ShardScores:
    """Per-sample columns of one shard (or of the merged pool), in pool order.

    ``positions`` int64 ``[n]`` (pool positions of the readable samples); ``values`` float64
    ``[n]`` (the strategy's score); ``predicted`` int64 ``[n]``; ``confidence``, ``total``,
    ``aleatoric``, ``epistemic`` float64 ``[n]`` (the uncertainty split in nats);
    ``problems`` (uri, reason) of unreadable samples; with a feature density ``log_density``
    float64 ``[n]`` (nats) and ``ood`` bool ``[n]`` (else None); ``chunk_entropy``: each
    chunk's summed total uncertainty, in pool order (the round's mean is their sum over n);
    ``candidates``: a batch-aware strategy's kept candidates (else None).
    """

    positions: np.ndarray
    values: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
    total: np.ndarray
    aleatoric: np.ndarray
    epistemic: np.ndarray
    problems: list[tuple[str, str]] = field(default_factory=list)
    log_density: np.ndarray | None = None
    ood: np.ndarray | None = None
    chunk_entropy: list[tuple[int, float]] = field(default_factory=list)
    candidates: Candidates | None = None

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def mean_entropy(self) -> float | None:
        """Mean total uncertainty (nats) over the scored samples: the per-chunk sums added in
        pool order (as one process adds them), over n; None when nothing was scored."""
        total = 0.0
        for _, chunk_sum in sorted(self.chunk_entropy):
            total += chunk_sum
        return total / len(self) if len(self) else None

    def score_columns(self, sample_ids: np.ndarray) -> dict[str, np.ndarray]:
        """The columns :func:`~activelabel.storage.bulk.write_score_columns` writes, by score
        column name; ``sample_ids[p]`` is pool position p's id."""
        columns = {
            "sample_id": np.asarray(sample_ids, dtype=np.int64)[self.positions], "value": self.values,
            "predicted_class": self.predicted, "confidence": self.confidence, "total": self.total,
            "aleatoric": self.aleatoric, "epistemic": self.epistemic,
        }
        if self.log_density is not None:
            columns.update(log_density=self.log_density, ood=self.ood)
        return columns


_COLUMNS = ("positions", "values", "predicted", "confidence", "total", "aleatoric", "epistemic")
_DENSITY = ("log_density", "ood")
_DTYPES = {"positions": np.int64, "predicted": np.int64, "ood": np.bool_}


class PoolScorer:
    """The map of a round's scoring: each chunk of ``[T, b, C]`` probabilities (and features)
    reduced at once to per-sample columns; nothing proportional to the pool but those columns.

    One process and every shard use this class, so their columns are equal bit for bit.
    ``strategy``: an acquisition :class:`~activelabel.acquisition.registry.Strategy`;
    ``density``: the round's :class:`~activelabel.campaign.density.RoundDensity` or None;
    ``seed``: the round's seed (a strategy that draws random numbers gets a generator seeded
    by (seed, chunk index), chunk index = first position // ``chunk``); ``candidates`` > 0
    keeps a batch-aware strategy's top candidates among positions below ``selectable``.
    """

    def __init__(self, strategy, density, seed: int, *, candidates: int = 0, selectable: int | None = None,
                 chunk: int = CHUNK) -> None:
        self.strategy, self.density, self.seed, self.chunk = strategy, density, seed, chunk
        self.selectable = selectable
        self.candidates = Candidates(candidates) if candidates else None
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in _COLUMNS + _DENSITY}
        self.chunk_entropy: list[tuple[int, float]] = []

    def add(self, positions: np.ndarray, probs: np.ndarray, features: np.ndarray | None = None) -> None:
        """One chunk: pool ``positions`` int ``[b]``, probabilities ``[T, b, C]``, and the
        penultimate features ``[b, D]`` when the round has a density."""
        positions = np.asarray(positions, dtype=np.int64)
        chunk_index = int(positions[0]) // self.chunk
        rng = np.random.default_rng([self.seed, chunk_index])
        fitted = self.density
        if self.strategy.needs_features:
            values = self.strategy.score(probs, rng=rng, features=PoolFeatures(fitted.density, features))
            log_q = -values
        else:
            values = self.strategy.score(probs, rng=rng)
            log_q = fitted.log_density(features) if fitted is not None else None
        split = uncertainty_decomposition(probs)
        self.chunk_entropy.append((chunk_index, float(split.total.sum())))
        for name, column in (("positions", positions), ("values", values), ("predicted", predicted_class(probs)),
                             ("confidence", confidence(probs)), ("total", split.total),
                             ("aleatoric", split.aleatoric), ("epistemic", split.epistemic)):
            self.parts[name].append(np.asarray(column, dtype=_DTYPES.get(name, np.float64)))
        if fitted is not None:
            self.parts["log_density"].append(np.asarray(log_q, dtype=np.float64))
            self.parts["ood"].append(np.asarray(log_q < fitted.threshold, dtype=np.bool_))
        if self.candidates is not None:
            mine = positions < (self.selectable if self.selectable is not None else np.iinfo(np.int64).max)
            self.candidates.offer(positions[mine], split.epistemic[mine], probs[:, mine])

    def result(self, problems: list[tuple[str, str]] | None = None) -> ShardScores:
        """The columns so far as one :class:`ShardScores` (the chunks are released)."""
        columns: dict[str, Any] = {}
        for name in _COLUMNS + _DENSITY:
            chunks = self.parts[name]
            if name in _DENSITY and self.density is None:
                columns[name] = None
            else:
                columns[name] = np.concatenate(chunks) if chunks else np.zeros(0, _DTYPES.get(name, np.float64))
            self.parts[name] = []
        return ShardScores(**columns, problems=list(problems or []), chunk_entropy=self.chunk_entropy,
                           candidates=self.candidates)


def plan_shards(count: int, shards: int, *, chunk: int = CHUNK) -> list[tuple[int, int]]:
    """``[(start, stop), ...]``: ``count`` pool positions cut into at most ``shards`` slices of
    whole chunks (the last may be shorter), as equal as chunks allow; none empty."""
    if shards < 1:
        raise ConfigError(f"shards must be at least 1, got {shards}")
    chunks = -(-count // chunk)
    if chunks == 0:
        return []
    per, extra = divmod(chunks, min(shards, chunks))
    bounds, first = [], 0
    for k in range(min(shards, chunks)):
        last = first + per + (k < extra)
        bounds.append((first * chunk, min(last * chunk, count)))
        first = last
    return bounds


def shard_requests(config: CampaignConfig, round_id: int, strategy: str, uris: Sequence[str], *, seed: int,
                   samples: int, temperature: float, shards: int, database_url: str | None = None,
                   checkpoint_path: str | None = None, workers: int = 0, density: Any = None,
                   candidates: int = 0, selectable: int | None = None,
                   flow_database_url: str | None = None) -> list[ShardRequest]:
    """One :class:`ShardRequest` per slice of ``uris`` (:func:`plan_shards`).

    ``database_url`` (and ``flow_database_url``, the URL workers without their own
    ``$ACTIVELABEL_DATABASE_URL`` use) travel to the workers, so they must not carry a password
    (raises :class:`~activelabel.errors.ConfigError`): workers take it from their own
    ``$ACTIVELABEL_DATABASE_PASSWORD`` (or the whole URL from ``$ACTIVELABEL_DATABASE_URL``).
    """
    from activelabel.storage.database import has_password

    if any(url is not None and has_password(url) for url in (database_url, flow_database_url)):
        raise ConfigError(
            "a database URL with a password cannot be sent to scoring workers; give them "
            "ACTIVELABEL_DATABASE_PASSWORD (or ACTIVELABEL_DATABASE_URL) in their environment instead"
        )
    settings = config.to_dict()
    return [
        ShardRequest(settings, round_id, strategy, start, tuple(uris[start:stop]), seed, samples, temperature,
                     database_url, checkpoint_path, CHUNK, workers, density, candidates, selectable,
                     flow_database_url)
        for start, stop in plan_shards(len(uris), shards)
    ]


def _models(request: ShardRequest, device):
    """The round's model(s): from the checkpoint file, else from the database's rows."""
    import torch
    from sqlalchemy import select

    from activelabel.pipeline.checkpoint import load_model
    from activelabel.pipeline.model import ModelSpec

    if request.checkpoint_path is not None:
        stored = torch.load(request.checkpoint_path, map_location="cpu", weights_only=False)
        if stored.get("round_id") != request.round_id:
            raise CampaignStateError(
                f"checkpoint file {request.checkpoint_path} holds round {stored.get('round_id')}, "
                f"not round {request.round_id}; write it again with save_round_checkpoint"
            )
        members = stored["members"]
    else:
        from activelabel.storage import ModelCheckpoint, session_scope

        engine = open_worker_database(request)
        try:
            with session_scope(engine) as session:
                members = [(c.architecture, c.state) for c in session.scalars(
                    select(ModelCheckpoint).where(ModelCheckpoint.round_id == request.round_id)
                    .order_by(ModelCheckpoint.member))]
        finally:
            engine.dispose()
    if not members:
        raise CampaignStateError(f"round id {request.round_id} has no stored model to score with")
    return [load_model(ModelSpec.from_dict(architecture), state, device) for architecture, state in members]


WORKER_ENVIRONMENT = ("set ACTIVELABEL_DATABASE_URL (and ACTIVELABEL_DATABASE_PASSWORD if the database needs "
                      "one) in the workers' environment to the campaign's database (docs/scale.md)")


def worker_name() -> str:
    """This worker as a message names it: its Dask address when it is a Dask worker, and host."""
    import socket

    host = socket.gethostname()
    try:
        from distributed import get_worker

        return f"Dask worker {get_worker().address} on host {host}"
    except (ImportError, ValueError):
        return f"scoring process on host {host}"


def open_worker_database(request: ShardRequest):
    """The engine a worker reads the round's checkpoint with: ``request.database_url``, else the
    worker's ``$ACTIVELABEL_DATABASE_URL``, else ``request.flow_database_url``; the password
    from the worker's ``$ACTIVELABEL_DATABASE_PASSWORD``. Never a default SQLite file, and never
    creates a database or schema: a worker with no URL, or whose database cannot be reached or
    does not hold the request's round of its campaign, raises
    :class:`~activelabel.errors.WorkerDatabaseError` naming the worker and the (masked) URL, so
    the run does not mistake it for the campaign's database being lost."""
    import os
    from pathlib import Path

    from sqlalchemy import select
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from activelabel.errors import DatabaseUnavailableError, WorkerDatabaseError
    from activelabel.storage import Campaign, Round, open_engine, session_scope
    from activelabel.storage.database import DATABASE_URL_ENV, describe_error, describe_url, resolve_database_url

    worker = worker_name()
    chosen = request.database_url or os.environ.get(DATABASE_URL_ENV) or request.flow_database_url
    if not chosen:
        raise WorkerDatabaseError(f"{worker} has no database to read round id {request.round_id}'s model from; "
                                  + WORKER_ENVIRONMENT)
    url = resolve_database_url(chosen)
    shown = describe_url(url)
    try:
        parsed = make_url(url)
    except (ValueError, SQLAlchemyError):
        parsed = None
    if parsed is not None and parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if not path or path == ":memory:" or not Path(path).is_file():
            raise WorkerDatabaseError(f"{worker} was given database {shown}, which does not exist there; "
                                      + WORKER_ENVIRONMENT)
    try:
        engine = open_engine(url, create_schema=False)
    except DatabaseUnavailableError as error:
        raise WorkerDatabaseError(f"{worker}: {error}; {WORKER_ENVIRONMENT}") from None
    name = request.config.get("name")
    try:
        with session_scope(engine) as session:
            found = session.execute(select(Campaign.name).join(Round, Round.campaign_id == Campaign.id)
                                    .where(Round.id == request.round_id)).scalar_one_or_none()
    except SQLAlchemyError as error:
        detail = describe_error(error, engine)
        engine.dispose()
        raise WorkerDatabaseError(f"{worker} opened database {shown}, which has no activelabel campaigns "
                                  f"({detail}); {WORKER_ENVIRONMENT}") from None
    if found != name:
        engine.dispose()
        raise WorkerDatabaseError(f"{worker} opened database {shown}, which does not hold round id "
                                  f"{request.round_id} of campaign {name!r}; {WORKER_ENVIRONMENT}")
    return engine


def save_round_checkpoint(engine, round_id: int, path: str) -> str:
    """Write the round's checkpoint rows to one file (for workers that cannot reach the database)."""
    import torch
    from sqlalchemy import select

    from activelabel.storage import ModelCheckpoint, session_scope

    with session_scope(engine) as session:
        members = [(c.architecture, c.state) for c in session.scalars(
            select(ModelCheckpoint).where(ModelCheckpoint.round_id == round_id).order_by(ModelCheckpoint.member))]
    if not members:
        raise CampaignStateError(f"round id {round_id} has no stored model to save")
    torch.save({"round_id": round_id, "members": members}, path)
    return path


def shard_store(config: CampaignConfig, uris: Sequence[str]):
    """The image store a worker reads ``uris`` with, built without listing the pool again."""
    from activelabel.campaign.data import campaign_data, data_root

    if config.dataset != "files":
        return campaign_data(config).store  # in memory: the dataset itself
    from activelabel.pipeline.memmap import MemmapStore, parse_row_uri
    from activelabel.pipeline.store import FileStore

    rows = any(parse_row_uri(u) for u in uris)
    return (MemmapStore if rows else FileStore)(data_root(config.data_pool), size=config.image_size,
                                                channels=config.channels)


def score_shard(request: ShardRequest) -> ShardScores:
    """Score one slice of the pool (see the module docstring); never raises for a bad image:
    unreadable samples are left out and listed in ``problems``.

    Raises :class:`~activelabel.errors.CampaignStateError` when the round has no checkpoint and
    :class:`~activelabel.errors.ConfigError` for a batch-aware strategy without ``candidates``
    or a feature strategy without ``density``.
    """
    from activelabel.campaign.pixels import stream_probabilities
    from activelabel.memory import steady_allocator
    from activelabel.pipeline.device import resolve_device, use_cpu_threads

    config = CampaignConfig.from_dict(request.config)
    strategy = get_strategy(request.strategy)
    if strategy.batch_aware and not request.candidates:
        raise ConfigError(f"strategy {strategy.name!r} picks its batch jointly over candidates; "
                          "give the shard request candidates=N")
    if strategy.needs_features and request.density is None:
        raise ConfigError(f"strategy {strategy.name!r} needs the round's feature density in the shard request")
    steady_allocator()  # a worker is not started by the CLI: keep its memory flat as the CLI does
    use_cpu_threads(config.cpu_threads)
    device = resolve_device(config.device)
    models = _models(request, device)
    model = models if len(models) > 1 else models[0]
    store = shard_store(config, request.uris)
    # A Dask worker process is daemonic and may not start DataLoader workers: it decodes
    # itself (the cluster's workers are the parallelism then).
    import multiprocessing

    loader_workers = 0 if multiprocessing.current_process().daemon else request.workers
    problems: list[tuple[str, str]] = []
    scorer = PoolScorer(strategy, request.density, request.seed, candidates=request.candidates,
                        selectable=request.selectable, chunk=request.chunk)
    for positions, probs, *features in stream_probabilities(
        model, store, list(request.uris), samples=request.samples, device=device, seed=request.seed,
        workers=loader_workers, batch_size=request.chunk, problems=problems, temperature=request.temperature,
        features=request.density is not None,
    ):
        scorer.add(np.asarray(positions, dtype=np.int64) + request.start, probs, features[0] if features else None)
    return scorer.result(problems)


def merge_shards(results: Sequence[ShardScores]) -> ShardScores:
    """The shards as one pool-ordered result (positions sorted; problems in pool order;
    candidates merged as one process keeps them)."""
    if not results:
        empty = np.zeros(0)
        return ShardScores(empty.astype(np.int64), empty, empty.astype(np.int64), empty, empty, empty, empty)
    results = sorted(results, key=lambda r: int(r.positions[0]) if len(r) else -1)
    dense = results[0].log_density is not None
    names = _COLUMNS + (_DENSITY if dense else ())
    columns = {name: np.concatenate([getattr(r, name) for r in results]) for name in names}
    order = np.argsort(columns["positions"], kind="stable")
    kept = [r.candidates for r in results if r.candidates is not None]
    candidates = None
    if kept:
        candidates = Candidates(kept[0].m)
        for part in kept:
            if part.probs is not None:
                candidates.offer(part.positions, part.bald, part.probs)
    return ShardScores(**{name: column[order] for name, column in columns.items()},
                       problems=[p for r in results for p in r.problems],
                       chunk_entropy=sorted(c for r in results for c in r.chunk_entropy), candidates=candidates)


def shard_rows(scores: ShardScores, round_id: int, strategy: str, sample_ids: Sequence[int]) -> list[tuple]:
    """Score rows (:data:`~activelabel.storage.bulk.ALL_SCORE_COLUMNS` order, 9 values, 11 with
    a density) for :func:`~activelabel.storage.bulk.write_scores`; ``sample_ids[p]`` is pool
    position p's id. For inspection and tests: a round writes :meth:`ShardScores.score_columns`."""
    columns = scores.score_columns(np.asarray(sample_ids, dtype=np.int64))
    names = [n for n in ("sample_id", "value", "predicted_class", "confidence", "total", "aleatoric", "epistemic",
                         "log_density", "ood") if n in columns]
    return [(round_id, row[0], strategy, *row[1:]) for row in zip(*(columns[n].tolist() for n in names))]


def top_k(scores: ShardScores, sample_ids: Sequence[int], k: int, *, selectable: int | None = None) -> list[int]:
    """The ``k`` sample ids a round selects from merged scores: higher score first, equal
    scores by lower sample id (the order ``select_step`` breaks ties in). Only positions below
    ``selectable`` (default: all) may be picked."""
    keep = scores.positions < (selectable if selectable is not None else len(sample_ids))
    ids = np.asarray(sample_ids, dtype=np.int64)[scores.positions[keep]]
    order = np.lexsort((ids, -scores.values[keep]))
    return [int(i) for i in ids[order[:k]]]


@dataclass
class RoundShards:
    """A round's shard requests and what the merge needs: the pool's sample ids in position
    order, and how many of them (the first ``selectable``) may be selected (the rest are earlier
    rounds' samples still out with annotators, scored for their tasks only)."""

    requests: list[ShardRequest]
    sample_ids: list[int]
    selectable: int


def round_shards(engine, round_id: int, *, shards: int, database_url: str | None = None,
                 checkpoint_path: str | None = None) -> RoundShards:
    """The shard requests of an active round in ``scoring``: the same pool, subset, leftovers,
    seed, passes and temperature as :func:`~activelabel.campaign.steps.score_step` uses, for
    scoring outside a round (a round with ``run_shards`` builds its own requests, with its
    feature density and candidates)."""
    from activelabel.campaign import steps
    from activelabel.storage import Campaign, Round, RoundKind, RoundStatus, session_scope
    from activelabel.storage.repository import SampleColumns, outstanding_samples, unlabeled_pool_columns

    with session_scope(engine) as session:
        rnd = session.get(Round, round_id)
        if rnd is None or rnd.kind != RoundKind.active or rnd.status != RoundStatus.scoring:
            raise CampaignStateError(f"round id {round_id} is not an active round waiting to be scored")
        config = CampaignConfig.from_dict(session.get(Campaign, rnd.campaign_id).config)
        pool = steps._pool_subset(unlabeled_pool_columns(session, rnd.campaign_id), config, rnd)
        leftovers = SampleColumns.of(outstanding_samples(session, rnd.campaign_id, config.annotations_per_task))
        samples = pool + leftovers
        uris = samples.uris
        ids = samples.ids.tolist()
        seed = steps._seed(config, rnd)
        temperature = steps._acquisition_temperature(rnd, config)
        strategy = rnd.strategy
    passes = 0 if config.uncertainty in ("deterministic", "ensemble") else config.mc_samples
    requests = shard_requests(config, round_id, strategy, uris, seed=seed, samples=passes,
                              temperature=temperature, shards=shards, database_url=database_url,
                              checkpoint_path=checkpoint_path, workers=config.loader_workers)
    return RoundShards(requests, ids, len(pool))


class ShardRunner(Protocol):
    """Where a round's shards run (``score_step(..., run_shards=runner)``).

    ``shards``: how many slices the pool is cut into; ``database_url``: what the workers open to
    read the round's checkpoint (None: their own ``$ACTIVELABEL_DATABASE_URL``); it never
    carries a password. Calling the runner scores every request and returns the results in any
    order; it raises what a shard raised. The Dask runner is
    :class:`activelabel.flows.sharded.DaskShards`.
    """

    shards: int
    database_url: str | None

    def __call__(self, requests: list[ShardRequest]) -> Sequence[ShardScores]: ...


@dataclass
class InProcessShards:
    """A :class:`ShardRunner` that scores the shards one after another in this process: the
    reference the Dask runner is compared with (tests, bench)."""

    shards: int = 2
    database_url: str | None = None

    def __call__(self, requests: list[ShardRequest]) -> list[ShardScores]:
        return [score_shard(request) for request in requests]
