"""Scoring a round's pool over a Dask cluster, through Prefect's Dask task runner (issue #11).

Each shard is one Prefect task (:func:`~activelabel.campaign.shards.score_shard`) that Dask
runs on a worker; the shards' columns come back and are merged in pool order, so the rows and
the selection equal one process's (see :mod:`activelabel.campaign.shards`). Two ways to get a
cluster, and no cluster manager of our own:

- ``address="tcp://scheduler:8786"``: an existing cluster (started by ``dask scheduler`` /
  ``dask worker``, dask-kubernetes, dask-jobqueue, ...; see docs/scale.md);
- ``workers=N``: a temporary ``distributed.LocalCluster`` of N single-threaded worker
  processes, for one machine.

Workers need the project installed, the campaign's images at the same path, and the database
(or a checkpoint file from :func:`~activelabel.campaign.shards.save_round_checkpoint`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from activelabel.campaign.dask_options import check_cluster
from activelabel.campaign.shards import ShardRequest, ShardScores, merge_shards, score_shard
from activelabel.errors import ConfigError

#: Shards per worker thread: a slower worker then holds back half a share, not a whole one.
SHARDS_PER_WORKER = 2


@task(name="score-shard", cache_policy=NO_CACHE, persist_result=False)
def score_shard_task(request: ShardRequest) -> ShardScores:
    return score_shard(request)


def dask_task_runner(*, address: str | None = None, workers: int | None = None):
    """Prefect's ``DaskTaskRunner`` for an existing scheduler (``address``) or a local cluster
    of ``workers`` processes (one thread each: torch does its own threading)."""
    from prefect_dask import DaskTaskRunner

    check_cluster(address=address, workers=workers)
    if address is not None:
        return DaskTaskRunner(address=address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


def score_shards_on_dask(requests: Sequence[ShardRequest], *, address: str | None = None,
                         workers: int | None = None) -> ShardScores:
    """Score every shard on the cluster and merge them in pool order.

    The requests reach the workers through Dask, never as flow parameters (Prefect stores
    those; a pool's URIs would fill its database). Raises what a shard raised.
    """
    return merge_shards(_run_on_dask(requests, address=address, workers=workers))


def _run_on_dask(requests: Sequence[ShardRequest], *, address: str | None, workers: int | None) -> list[ShardScores]:
    runner = dask_task_runner(address=address, workers=workers)
    shards = list(requests)

    @flow(name="activelabel-score-shards", task_runner=runner, validate_parameters=False)
    def score_shards_flow() -> list[ShardScores]:
        futures = [score_shard_task.submit(request) for request in shards]
        return [future.result() for future in futures]

    return score_shards_flow()


@dataclass
class DaskShards:
    """The round's :class:`~activelabel.campaign.shards.ShardRunner` on a Dask cluster:
    ``score_step(engine, round_id, run_shards=DaskShards(workers=2))``.

    ``address`` (an existing scheduler) or ``workers`` (a temporary local cluster of that many
    single-threaded processes), as :func:`dask_task_runner`. ``database_url``: the URL workers
    read the round's checkpoint from; None (the default, what the CLI passes) makes each worker
    use its own ``$ACTIVELABEL_DATABASE_URL`` and ``$ACTIVELABEL_DATABASE_PASSWORD`` (a local
    cluster's workers inherit this process's), and a worker without that variable uses
    ``flow_database_url`` (the round flow passes its own URL, without the password). A URL with a
    password is refused: it would travel to every worker. A worker whose database does not hold
    the round raises :class:`~activelabel.errors.WorkerDatabaseError`
    (:func:`~activelabel.campaign.shards.open_worker_database`). The pool is cut into :data:`SHARDS_PER_WORKER` shards per worker
    thread (an existing cluster is asked how many it has).
    """

    address: str | None = None
    workers: int | None = None
    database_url: str | None = None
    flow_database_url: str | None = None

    def __post_init__(self) -> None:
        from activelabel.storage.database import has_password

        check_cluster(address=self.address, workers=self.workers)
        if any(url is not None and has_password(url) for url in (self.database_url, self.flow_database_url)):
            raise ConfigError("a database URL with a password cannot be sent to Dask workers; give them "
                              "ACTIVELABEL_DATABASE_PASSWORD (or ACTIVELABEL_DATABASE_URL) in their environment")

    @cached_property
    def shards(self) -> int:
        if self.workers is not None:
            return SHARDS_PER_WORKER * self.workers
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            threads = sum(client.nthreads().values())
        return SHARDS_PER_WORKER * max(1, threads)

    def __call__(self, requests: list[ShardRequest]) -> list[ShardScores]:
        return _run_on_dask(requests, address=self.address, workers=self.workers)
