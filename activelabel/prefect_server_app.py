"""The app that activelabel's temporary Prefect API server runs: Prefect's own, quiet when it stops.

Why: when activelabel ends it stops the temporary server (SIGTERM). If Prefect's TaskRunRecorder
is still writing the last task-run events then (a flow's final events arrive just before the
end; on a busy machine the server lags behind), stopping the service cancels that write, and
Prefect logs ``Error flushing 1 events (1 to retry, 0 dropped)`` with a 50-line traceback ending
in ``aiosqlite/core.py ... _execute ... asyncio.exceptions.CancelledError`` (Prefect 3.x,
``prefect/server/services/task_run_recorder.py``, ``consumer.flush``). It is no error of the
run: activelabel's state lives in its own database; what is lost is the temporary server's
record of those task runs' last states. So exactly that record, a CancelledError logged by the
TaskRunRecorder after shutdown began, is dropped; any other record, and the same record while
the server runs (Prefect notes that database drivers can raise CancelledError for a lost
connection), is kept.

Started by ``uvicorn --factory activelabel.prefect_server_app:create_app`` (see
:mod:`activelabel.flows.prefect_api`); a module of its own, outside :mod:`activelabel.flows`,
so that the server process imports neither torch nor the flows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

RECORDER_LOGGER = "prefect.server.services.task_run_recorder"


class ShutdownCancelFilter(logging.Filter):
    """Drops a record whose exception is a CancelledError once :attr:`stopping` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.stopping = False

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (self.stopping and isinstance(error, asyncio.CancelledError))


def create_app() -> Any:
    """Prefect's server app (``prefect.server.api.server.create_app``, which reads its
    ephemeral settings from the environment), with :class:`ShutdownCancelFilter` on the
    TaskRunRecorder's logger, armed when the app's lifespan begins to shut down."""
    from prefect.server.api.server import create_app as prefect_app

    app = prefect_app()
    quiet = ShutdownCancelFilter()
    logging.getLogger(RECORDER_LOGGER).addFilter(quiet)
    lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def stopping_quietly(app_: Any) -> AsyncIterator[Any]:
        async with lifespan(app_) as state:
            try:
                yield state
            finally:
                quiet.stopping = True  # shutdown begins: Prefect's services stop after this

    app.router.lifespan_context = stopping_quietly
    return app
