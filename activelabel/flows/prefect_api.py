"""Prefect's temporary local API server: up in time or a one-line error, and never left behind.

Without ``PREFECT_API_URL`` Prefect 3 starts a temporary API server (``uvicorn``, a child
process) the first time a flow runs. Two things went wrong with it on a busy machine:

* It had 20 s to answer. On a loaded 2-core machine (several campaigns at once) that is not
  enough, and the failure was a 70-line traceback. Here the bound defaults to
  :data:`DEFAULT_STARTUP_TIMEOUT_S` (unless ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``
  is set; read when the server starts) and running out of it is a :class:`PrefectApiUnavailableError` that says what to do.
* It outlived activelabel: Prefect stops it from ``atexit``, which a SIGKILL or SIGTERM never
  runs, so the server stayed up, orphaned. Here the child gets a parent-death signal
  (Linux ``prctl(PR_SET_PDEATHSIG, SIGTERM)``): the kernel ends it whenever activelabel ends,
  however it ends. Prefect 3 has no in-process mode any more, and a process group would not
  help against a SIGKILL of the parent alone, so this is the one bound that always holds.

:func:`install` puts a ``BoundEphemeralServer`` (see :func:`bound_server_class`) where Prefect looks for its temporary
server (the ``SubprocessASGIServer`` instance for "no port"), the way Prefect's own test
utilities swap it. Nothing is started here; Prefect still starts it when a flow needs it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache, partial
from typing import Any

from activelabel.errors import PrefectApiUnavailableError

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
# Idle, the server answers in about 3 s; its first start (it migrates its own SQLite
# database) under a load of 10 on 2 cores took more than Prefect's 20 s. 180 s covers that
# with room; a healthy machine never waits for it (the bound only ends a wait that fails).
DEFAULT_STARTUP_TIMEOUT_S = 180
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def startup_timeout() -> float:
    """Seconds to wait for the temporary server: ``$PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``."""
    try:
        value = float(os.environ.get(STARTUP_TIMEOUT_ENV, DEFAULT_STARTUP_TIMEOUT_S))
    except ValueError:
        return DEFAULT_STARTUP_TIMEOUT_S
    return value if value > 0 else DEFAULT_STARTUP_TIMEOUT_S


def install() -> None:
    """Route Prefect's temporary server through ``BoundEphemeralServer`` (called on import of
    :mod:`activelabel.flows`, before any flow runs).

    A no-op when a Prefect API is configured (``PREFECT_API_URL`` or a Prefect profile), when
    it is already installed, or when Prefect's temporary server is already running.
    """
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        return
    from prefect.server.api.server import SubprocessASGIServer

    current = SubprocessASGIServer._instances.get(None)
    if getattr(current, "bound_to_activelabel", False) or (current is not None and current.running):
        return
    SubprocessASGIServer._instances.pop(None, None)
    bound_server_class()()  # registers itself as the instance for "no port"


@lru_cache(maxsize=1)
def bound_server_class() -> type:
    """:class:`BoundEphemeralServer`, built on first use: importing Prefect's server code costs
    seconds, which a run against a configured PREFECT_API_URL never needs to pay."""
    from prefect.server.api.server import SubprocessASGIServer

    return type("BoundEphemeralServer", (_BoundMixin, SubprocessASGIServer), {})


class _BoundMixin:
    """Prefect's ``SubprocessASGIServer`` with a start-up bound that says what to do, and a
    server process that the kernel ends together with this one (Linux)."""

    bound_to_activelabel = True
    running: bool

    def start(self, timeout: int | None = None) -> None:
        """Start the server once; raises PrefectApiUnavailableError when it does not answer."""
        if self.running:
            return
        limit = timeout or startup_timeout()
        try:
            super().start(timeout=limit)  # type: ignore[arg-type]
        except Exception as exc:  # Prefect raises RuntimeError (timeout) or an httpx error
            self.stop()  # type: ignore[attr-defined]  # a server that answers late must not stay behind
            raise PrefectApiUnavailableError(_explain(exc, limit)) from None

    def _run_uvicorn_command(self) -> Any:
        import prefect.server.api.server as prefect_server

        with _children_die_with_this_thread(prefect_server):
            return super()._run_uvicorn_command()


def _explain(exc: BaseException, limit: float) -> str:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    reason = reason.split(" stdout:")[0].split(" stderr:")[0]
    return (
        f"Prefect's temporary API server did not start within {limit:g} s ({reason}); on a busy "
        f"machine allow it more time (export {STARTUP_TIMEOUT_ENV}=600), or run `prefect server "
        "start` in another shell and export PREFECT_API_URL=http://127.0.0.1:4200/api"
    )


@contextmanager
def _children_die_with_this_thread(module: Any) -> Iterator[None]:
    """While active, ``module``'s ``subprocess.Popen`` gives each child a parent-death signal.

    Linux only (elsewhere Prefect's own atexit stop remains). The signal follows the thread
    that starts the child, so it is set only from the main thread, which lives as long as
    the process; a start from another thread keeps Prefect's behaviour and logs why.
    """
    preexec = _parent_death_signal() if sys.platform.startswith("linux") else None
    if preexec is not None and threading.current_thread() is not threading.main_thread():
        log.debug("Prefect's server started outside the main thread: no parent-death signal")
        preexec = None
    if preexec is None:
        yield
        return
    real = module.subprocess
    module.subprocess = _SubprocessWith(real, preexec)
    try:
        yield
    finally:
        module.subprocess = real


class _SubprocessWith:
    """The ``subprocess`` module, but ``Popen`` runs ``preexec`` in the child before exec."""

    def __init__(self, real: Any, preexec: Callable[[], None]) -> None:
        self._real = real
        self.Popen = partial(real.Popen, preexec_fn=preexec)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to SIGTERM the child when its parent ends, with the
    child in a process group of its own."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here, not after fork
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        # Its own process group: a Ctrl-C at the terminal reaches activelabel only, which then
        # reports the crashed run to this server before stopping it (Prefect's atexit stop).
        os.setpgid(0, 0)
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec
