"""How many campaigns of an experiment run at once (`compare --workers`, default ``auto``).

``auto`` runs as many campaigns at once as the machine has room for: on the CPU, one per
``cpu_threads`` usable cores; on a GPU, one (several processes on one GPU compete for its
memory, and one small model's training already keeps it busy between host steps; ``--workers N``
runs more). Never more than the campaigns left to run: a worker process costs a second import
of torch and Prefect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from activelabel.errors import ConfigError
from activelabel.pipeline.cpus import usable_cpus

AUTO = "auto"


@dataclass(frozen=True)
class Workers:
    """Campaigns run at once, and in words why that many (shown when the experiment starts)."""

    count: int
    why: str


def parse_workers(value: object, source: str) -> int | None:
    """A workers setting as given (an option's text, or an experiment file's value): ``None``
    for ``auto``, else a whole number of at least 1.

    Raises:
        ConfigError: naming ``source`` (``--workers``, or the file and key) and what it accepts.
    """
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    elif isinstance(value, str) and value.strip().removeprefix("-").isdigit():
        count = int(value)
    else:
        raise ConfigError(f"{source} must be 'auto' or a whole number of at least 1, got {value!r}")
    if count < 1:
        raise ConfigError(f"{source} must be at least 1, got {count}")
    return count


def choose_workers(given: int | None, pending: int, *, device: str, cpu_threads: int,
                   cuda_available: Callable[[], bool]) -> Workers:
    """The number of campaigns to run at once; ``given`` (``None``: auto) wins when set.

    ``device`` is the campaigns' device setting (``auto``, ``cpu``, ``cuda[:N]``);
    ``cuda_available`` is asked only when ``device`` is ``auto`` (it imports torch).
    """
    if given is not None:
        return Workers(given, "--workers")
    pending = max(1, pending)
    on_gpu = device.startswith("cuda") or (device == AUTO and cuda_available())
    if on_gpu:
        return Workers(1, "auto: one process on the GPU; --workers N runs more")
    cores = usable_cpus()
    per_core = max(1, cores // max(1, cpu_threads))
    count = min(pending, per_core)
    if count == pending and pending < per_core:
        return Workers(count, f"auto: {_campaigns(pending)} left")
    threads = f", {cpu_threads} torch threads each" if cpu_threads > 1 else ""
    return Workers(count, f"auto: {cores} usable CPU core{'s' if cores != 1 else ''}{threads}")


def _campaigns(n: int) -> str:
    return f"{n} campaign{'s' if n != 1 else ''}"
