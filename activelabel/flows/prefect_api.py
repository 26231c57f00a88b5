"""Prefect's temporary local API server: up in time or a one-line error, and never left behind.

Without ``PREFECT_API_URL`` Prefect 3 starts a temporary API server (``uvicorn``, a child
process) the first time a flow runs. Two things went wrong with it on a busy machine:

* It had 20 s to answer (counted in its own pauses only, so really much longer), too little
  on a loaded 2-core machine, and the failure was a 70-line traceback. Here the wait is a
  wall-clock bound: ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS`` when set, else
  :func:`default_startup_timeout` (120 s, more on a loaded machine, at most 600 s). Running
  out of it is a :class:`PrefectApiUnavailableError` that says what to do.
* It outlived activelabel: Prefect stops it from ``atexit``, which a SIGKILL never runs, so
  the server stayed up, orphaned. Here the child gets a parent-death signal (Linux
  ``prctl(PR_SET_PDEATHSIG, SIGTERM)``): the kernel ends it whenever activelabel ends, however
  it ends. Prefect 3 has no in-process mode any more, and a process group alone does not help
  against a SIGKILL of the parent, so this is the bound that always holds. The child also gets
  a process group of its own, so a terminal's Ctrl-C reaches activelabel, which then stops it.

:func:`install` puts a ``BoundEphemeralServer`` (see :func:`bound_server_class`) where Prefect
looks for its temporary server (the ``SubprocessASGIServer`` instance for "no port"), the way
Prefect's own test utilities swap it. Nothing starts here; Prefect starts it when a flow needs it.

It also tells Prefect's client that this server takes no CSRF token (see :func:`match_client_csrf`):
by default the server does not protect against CSRF (``PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED``
false) while the client asks it for a token (``PREFECT_CLIENT_CSRF_SUPPORT_ENABLED`` true), so
each new client's first request was a ``GET /csrf-token`` answered ``422 Unprocessable Entity``
("CSRF protection is disabled."), which ``--verbose`` printed once per client.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache, partial
from typing import Any

import httpx

from activelabel.errors import PrefectApiUnavailableError

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_ENV = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
CLIENT_CSRF_ENV = "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED"
ANALYTICS_ENV = "PREFECT_SERVER_ANALYTICS_ENABLED"
# Measured on 2 cores: idle, the first start (it creates its own SQLite database) takes ~3 s;
# at a load average of 11 it took 32 s (Prefect allows 20 s); at ~20 it took over 220 s. So the
# default grows with the machine's load per core: 120 s when idle, up to 600 s. A healthy
# start never waits for the bound; it only ends a wait that is failing.
BASE_STARTUP_TIMEOUT_S = 120.0
MAX_DEFAULT_STARTUP_TIMEOUT_S = 600.0
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
# The uvicorn factory Prefect starts its temporary server with, and ours in its place: Prefect's
# app, without the traceback it logs when stopped mid-write (see activelabel/prefect_server_app.py).
PREFECT_APP = "prefect.server.api.server:create_app"
ACTIVELABEL_APP = "activelabel.prefect_server_app:create_app"


def default_startup_timeout() -> float:
    """Seconds: ``BASE_STARTUP_TIMEOUT_S`` times the 1-minute load average per CPU core (at
    least 1), at most ``MAX_DEFAULT_STARTUP_TIMEOUT_S``."""
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):
        load = 0.0
    busy = max(1.0, load / (os.cpu_count() or 1))
    return min(MAX_DEFAULT_STARTUP_TIMEOUT_S, BASE_STARTUP_TIMEOUT_S * busy)


def startup_timeout() -> float:
    """Seconds to wait for the temporary server: ``$PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``
    when the user set it, else :func:`default_startup_timeout`."""
    try:
        value = float(os.environ.get(STARTUP_TIMEOUT_ENV, ""))
    except ValueError:
        return default_startup_timeout()
    return value if value > 0 else default_startup_timeout()


def install() -> None:
    """Route Prefect's temporary server through ``BoundEphemeralServer`` (called on import of
    :mod:`activelabel.flows`, before any flow runs).

    A no-op when a Prefect API is configured (``PREFECT_API_URL`` or a Prefect profile), when
    it is already installed, or when Prefect's temporary server is already running.
    """
    from prefect.settings import get_current_settings

    if get_current_settings().api.url:
        return
    match_client_csrf()
    quiet_temporary_server_analytics()
    from prefect.server.api.server import SubprocessASGIServer

    current = SubprocessASGIServer._instances.get(None)
    if getattr(current, "bound_to_activelabel", False) or (current is not None and current.running):
        return
    SubprocessASGIServer._instances.pop(None, None)
    bound_server_class()()  # registers itself as the instance for "no port"


def match_client_csrf() -> bool:
    """Turn the Prefect client's CSRF support off when the server it will talk to has CSRF
    protection off; True when it did.

    Only for Prefect's temporary server (see :func:`install`), whose settings are this
    process's: its ``server.api.csrf_protection_enabled`` (default false) is what it will run
    with. Prefect's client (``prefect/client/base.py``, ``_add_csrf_headers``) otherwise fetches
    ``/csrf-token`` before its first change request, gets 422 "CSRF protection is disabled.",
    and only then turns its support off, once per client (several per run). A user's own
    ``PREFECT_CLIENT_CSRF_SUPPORT_ENABLED`` (environment or profile) and a server with CSRF
    protection on are left alone. Sets the variable in ``os.environ`` (child processes of this
    one agree) and refreshes Prefect's global settings, as Prefect does after its start-up
    plugins set variables.
    """
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.server.api.csrf_protection_enabled or "csrf_support_enabled" in settings.client.model_fields_set:
        return False
    os.environ[CLIENT_CSRF_ENV] = "false"
    refresh_global_settings_context()
    return True


def quiet_temporary_server_analytics() -> bool:
    """Turn Prefect's server analytics off for the temporary server; True when it did.

    The temporary server lives for one command. Its telemetry service would send a heartbeat
    from the user's machine that the user never asked for, and under load its write to the
    server's SQLite file raced the run's own writes and printed a "database is locked"
    traceback. A user's own ``PREFECT_SERVER_ANALYTICS_ENABLED`` (environment or profile) is
    left alone; a user's own Prefect server (``PREFECT_API_URL``) is never touched, because
    :func:`install` returns before this is called. Sets the variable in ``os.environ`` (the
    server is a child process) and refreshes Prefect's global settings.
    """
    from prefect.context import refresh_global_settings_context
    from prefect.settings import get_current_settings

    if "analytics_enabled" in get_current_settings().server.model_fields_set:
        return False
    os.environ[ANALYTICS_ENV] = "false"
    refresh_global_settings_context()
    return True


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
    failed: str | None = None  # the error of a start that failed
    running: bool

    def start(self, timeout: int | None = None) -> None:
        """Start the server once and wait for its /health, at most ``timeout`` seconds of wall
        clock (default :func:`startup_timeout`).

        Prefect's own wait counts only its 0.1 s pauses, not the time its health requests
        take, so on a loaded machine it waited many times its bound; this one is a real
        bound. Raises PrefectApiUnavailableError (the server stopped) when it runs out or the
        server exits.
        """
        if self.running:
            return
        if self.failed is not None:  # once per process: no second wait from Prefect's workers
            raise PrefectApiUnavailableError(self.failed)
        limit = float(timeout or startup_timeout())
        deadline = time.monotonic() + limit
        try:
            if self.port is None:
                self.port = self.find_available_port()
            self.running = True
            self.server_process = self._run_uvicorn_command()
            atexit.register(self.stop)
            with httpx.Client(timeout=5) as client:
                while True:
                    code = self.server_process.poll()
                    if code == 3:  # uvicorn could not bind: the port was taken meanwhile
                        self.port = self.find_available_port()
                        self.server_process = self._run_uvicorn_command()
                    elif code is not None:
                        raise RuntimeError(f"it exited with code {code}; run with --verbose to see why")
                    try:
                        if client.get(f"{self.api_url}/health").status_code == 200:
                            return
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("no answer yet")
                    time.sleep(0.2)
        except Exception as exc:
            self.stop()  # type: ignore[attr-defined]  # a server that answers late must not stay behind
            self.failed = _explain(exc, limit)
            # stop() unregistered this instance; stay the one Prefect finds, so that its later
            # calls get this error at once instead of a server started Prefect's way.
            type(self)._instances[None] = self  # type: ignore[attr-defined]
            raise PrefectApiUnavailableError(self.failed) from None

    def _run_uvicorn_command(self) -> Any:
        import prefect.server.api.server as prefect_server

        with _children_die_with_this_thread(prefect_server), _serving_our_app(prefect_server):
            return super()._run_uvicorn_command()


def _explain(exc: BaseException, limit: float) -> str:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
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


@contextmanager
def _serving_our_app(module: Any) -> Iterator[None]:
    """While active, ``module``'s ``subprocess.Popen`` runs :data:`ACTIVELABEL_APP` where it was
    asked for :data:`PREFECT_APP` (a command without it is left as it is)."""
    inner = module.subprocess
    module.subprocess = _AppSwap(inner)
    try:
        yield
    finally:
        module.subprocess = inner


class _AppSwap:
    """The ``subprocess`` module given, but ``Popen`` starts our server app instead of Prefect's."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def Popen(self, args: list[str], **kwargs: Any) -> Any:  # noqa: N802 (subprocess's name)
        return self._real.Popen([ACTIVELABEL_APP if arg == PREFECT_APP else arg for arg in args], **kwargs)

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
