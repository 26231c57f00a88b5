"""The --dask-address / --dask-workers pair checked without Prefect, Dask or torch.

The commands check it before anything heavy is imported, so a typo answers in a second (trial
14 F7); :mod:`activelabel.flows.sharded` checks it again where it builds the task runner.
"""

from __future__ import annotations

from activelabel.errors import ConfigError


def check_cluster(*, address: str | None = None, workers: int | None = None) -> None:
    """Raise :class:`~activelabel.errors.ConfigError` unless exactly one of a scheduler
    address (``tcp://host:8786``, ``tls://...``) and a worker count (>= 1) is given."""
    if (address is None) == (workers is None):
        raise ConfigError("give either --dask-address tcp://host:8786 (an existing cluster) or "
                          "--dask-workers N (a local one), not both or neither")
    if address is not None:
        if not address.startswith(("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")):
            raise ConfigError(f"--dask-address {address!r} is not a Dask scheduler address; "
                              "write it as tcp://host:8786")
    elif workers < 1:
        raise ConfigError(f"--dask-workers must be at least 1, got {workers}")
