"""The CPUs this process may use: what "as many as the machine allows" counts."""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask, so a container's or `taskset`'s
    limit counts, not the host's core count); at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
