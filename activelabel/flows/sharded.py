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

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from activelabel.campaign.shards import ShardRequest, ShardScores, merge_shards, score_shard
from activelabel.errors import ConfigError


@task(name="score-shard", cache_policy=NO_CACHE, persist_result=False)
def score_shard_task(request: ShardRequest) -> ShardScores:
    return score_shard(request)


def dask_task_runner(*, address: str | None = None, workers: int | None = None):
    """Prefect's ``DaskTaskRunner`` for an existing scheduler (``address``) or a local cluster
    of ``workers`` processes (one thread each: torch does its own threading)."""
    from prefect_dask import DaskTaskRunner

    if (address is None) == (workers is None):
        raise ConfigError("give either --dask-address tcp://host:8786 (an existing cluster) or "
                          "--dask-workers N (a local one), not both or neither")
    if address is not None:
        if not address.startswith(("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")):
            raise ConfigError(f"--dask-address {address!r} is not a Dask scheduler address; "
                              "write it as tcp://host:8786")
        return DaskTaskRunner(address=address)
    if workers < 1:
        raise ConfigError(f"--dask-workers must be at least 1, got {workers}")
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


def score_shards_on_dask(requests: Sequence[ShardRequest], *, address: str | None = None,
                         workers: int | None = None) -> ShardScores:
    """Score every shard on the cluster and merge them in pool order.

    The requests reach the workers through Dask, never as flow parameters (Prefect stores
    those; a pool's URIs would fill its database). Raises what a shard raised.
    """
    runner = dask_task_runner(address=address, workers=workers)
    shards = list(requests)

    @flow(name="activelabel-score-shards", task_runner=runner, validate_parameters=False)
    def score_shards_flow() -> list[ShardScores]:
        futures = [score_shard_task.submit(request) for request in shards]
        return [future.result() for future in futures]

    return merge_shards(score_shards_flow())
