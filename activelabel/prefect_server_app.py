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

The same goes for a stop that comes before Prefect's services have all started (a Ctrl-C in
the first seconds of a command, on a busy machine): Prefect's shutdown then stops a service that
never started and fails (``AssertionError: Reactive triggers not started``, ``prefect/server/
events/services/triggers.py``), and uvicorn prints that traceback and "Application shutdown
failed" under activelabel's one-line stop message. The temporary server is thrown away either
way, so a failure of its shutdown is logged on one debug line and not raised
(:func:`quiet_lifespan`).

Started by ``uvicorn --factory activelabel.prefect_server_app:create_app`` (see
:mod:`activelabel.flows.prefect_api`); a module of its own, outside :mod:`activelabel.flows`,
so that the server process imports neither torch nor the flows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

RECORDER_LOGGER = "prefect.server.services.task_run_recorder"
#: The same cancelled write, seen from the connection pool: rolling back the cancelled
#: connection logs "Exception during reset or similar" with the same CancelledError.
POOL_LOGGER = "sqlalchemy.pool.impl.AsyncAdaptedQueuePool"


class ShutdownCancelFilter(logging.Filter):
    """Drops a record whose exception is a CancelledError once :attr:`stopping` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.stopping = False

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (self.stopping and isinstance(error, asyncio.CancelledError))


def quiet_lifespan(lifespan: Callable[[Any], Any], quiet: ShutdownCancelFilter) -> Callable[[Any], Any]:
    """``lifespan`` (an app's lifespan context factory) that arms ``quiet`` when shutdown
    begins, and whose shutdown failures are logged at debug level instead of raised: the server
    is a temporary one that activelabel is stopping (see the module docstring)."""

    @asynccontextmanager
    async def stopping_quietly(app_: Any) -> AsyncIterator[Any]:
        context = lifespan(app_)
        state = await context.__aenter__()
        try:
            yield state
        finally:
            quiet.stopping = True  # shutdown begins: Prefect's services stop after this
            try:
                await context.__aexit__(None, None, None)
            except Exception as error:  # noqa: BLE001 - the whole server is being thrown away
                logging.getLogger(__name__).debug("The temporary Prefect server's shutdown failed: %r", error)

    return stopping_quietly


def create_app() -> Any:
    """Prefect's server app (``prefect.server.api.server.create_app``, which reads its
    ephemeral settings from the environment), with :class:`ShutdownCancelFilter` on the
    TaskRunRecorder's logger, armed when the app's lifespan begins to shut down, and a shutdown
    that does not fail loudly (:func:`quiet_lifespan`)."""
    from prefect.server.api.server import create_app as prefect_app

    app = prefect_app()
    quiet = ShutdownCancelFilter()
    for name in (RECORDER_LOGGER, POOL_LOGGER):
        logging.getLogger(name).addFilter(quiet)
    app.router.lifespan_context = quiet_lifespan(app.router.lifespan_context, quiet)
    return app
