"""Prefect's run lines kept out of a process's terminal unless the user asked for them (-v).

The CLI reports how a round or a campaign ended on its own line; Prefect's "Task run ... -
Crash detected! Execution was aborted by a termination signal." would follow it after a
Ctrl-C. The CLI quiets its own process; processes it starts (a ``serve`` tick, ``compare``'s
worker processes) learn the choice from ``PREFECT_LOGGING_LEVEL``, which the CLI sets and they
inherit.
"""

from __future__ import annotations

import logging
import os

__all__ = ["quiet_prefect_runs", "verbose"]


def verbose() -> bool:
    """Whether the command runs with -v: its ``PREFECT_LOGGING_LEVEL`` (INFO or DEBUG), which a
    child process inherits. Then every line keeps Prefect's format and nothing is quieted."""
    return os.environ.get("PREFECT_LOGGING_LEVEL", "WARNING").upper() in {"DEBUG", "INFO"}


def quiet_prefect_runs() -> None:
    """Unless :func:`verbose`: no Prefect flow-run or task-run lines from this process."""
    if not verbose():
        for name in ("prefect.flow_runs", "prefect.task_runs"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
