"""Test-wide setup: an isolated Prefect home, ONE Prefect API server for the whole run, helpers.

Why one shared server: without PREFECT_API_URL every flow run (in this process, and in every
`activelabel` subprocess) starts Prefect's temporary API server, and on a busy machine those
starts took longer than Prefect allows, so tests failed for reasons that had nothing to do
with activelabel. Here `prefect server start` is launched once when pytest starts (loopback,
a free port, its own PREFECT_HOME), PREFECT_API_URL is exported before anything imports
Prefect (in-process flows and subprocess CLI runs both use it), the first test waits for its
/api/health with a generous explicit bound (SERVER_START_BOUND_S), and it is stopped, with
its whole process group, when pytest ends.

Tests of the temporary-server path itself drop PREFECT_API_URL from their subprocess's
environment. To use a server of your own instead, export PREFECT_API_URL and
ACTIVELABEL_TEST_KEEP_PREFECT_API=1.

In parallel (``pytest -n 2``, pytest-xdist, as CI runs it) the server is still one: the
controller process starts it before it starts the workers, which inherit PREFECT_API_URL. Each
worker gets its own PREFECT_HOME (a temporary server started by a test keeps its database
there) and its own PostgreSQL schema (the storage tests wipe and rebuild the test database's
tables). Tests are handed out a module at a time (``--dist loadscope``), so a module's fixtures
are built once; a session fixture (the report builds) is built once per worker that needs it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

# Helpers shared by several test folders (no package __init__ files in tests/).
sys.path.insert(0, str(Path(__file__).with_name("support")))

# Prefect reads its settings at import time: isolate it before any test imports it.
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # "gw0", "gw1"… in a pytest-xdist worker
_PREFECT_HOME = tempfile.mkdtemp(prefix=f"activelabel-prefect-{XDIST_WORKER or ''}")
if XDIST_WORKER:
    os.environ["PREFECT_HOME"] = _PREFECT_HOME  # not the controller's: one per process
else:
    os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.pop("ACTIVELABEL_DATABASE_URL", None)
os.environ.pop("ACTIVELABEL_DATABASE_PASSWORD", None)

KEEP_API_ENV = "ACTIVELABEL_TEST_KEEP_PREFECT_API"
SERVER_START_BOUND_S = 600  # measured: >220 s for a first start at load ~20 on 2 cores; idle ~5 s
_server: dict = {}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_pytest():
    """A preexec_fn: the kernel sends the server SIGTERM when pytest ends without unconfigure."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def pytest_configure(config: pytest.Config) -> None:
    """Launch the shared Prefect server (no wait here: collection runs while it starts).

    An xdist worker uses the controller's (its PREFECT_API_URL, inherited), and a PostgreSQL
    schema of its own (:func:`_worker_postgres_schema`)."""
    if XDIST_WORKER:
        _worker_postgres_schema()
    if os.environ.get(KEEP_API_ENV) and os.environ.get("PREFECT_API_URL"):
        return
    if XDIST_WORKER and os.environ.get("PREFECT_API_URL"):
        return
    os.environ.pop("PREFECT_API_URL", None)
    home = Path(tempfile.mkdtemp(prefix="activelabel-prefect-server-"))
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false", "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "false"}
    log = open(home / "server.log", "w")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("prefect")), "server", "start",
         "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=home,
        preexec_fn=_die_with_pytest(),  # pytest killed (timeout, SIGKILL): no orphan server
    )
    url = f"http://127.0.0.1:{port}/api"
    os.environ["PREFECT_API_URL"] = url
    # That server takes no CSRF token: its clients need not ask for one (each ask is a 422).
    os.environ.setdefault("PREFECT_CLIENT_CSRF_SUPPORT_ENABLED", "false")
    _server.update(process=process, url=url, log=log, log_path=home / "server.log")


def _worker_postgres_schema() -> None:
    """Point ACTIVELABEL_TEST_POSTGRES_URL of this xdist worker at a schema of its own
    (``search_path``), created if missing: the storage tests wipe and rebuild the test database's
    tables, and two workers doing that in one schema break each other. Tests on a throwaway
    schema (tests/support/tests_support_postgres.py) set their own ``search_path`` anyway."""
    url = os.environ.get("ACTIVELABEL_TEST_POSTGRES_URL")
    if not url:
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"activelabel_test_{XDIST_WORKER}"
    admin = create_engine(url)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    except Exception as error:  # no server: the PostgreSQL tests say so themselves
        print(f"tests/conftest.py: no schema {schema} ({error}); PostgreSQL tests use the URL as given")
        return
    finally:
        admin.dispose()
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    os.environ["ACTIVELABEL_TEST_POSTGRES_URL"] = scoped.render_as_string(hide_password=False)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the shared server and everything it started (its own process group)."""
    process = _server.pop("process", None)
    if process is None:
        return
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
            os.killpg(process.pid, signal.SIGKILL)  # any straggler of the group
        except (subprocess.TimeoutExpired, ProcessLookupError):
            continue
        break
    _server["log"].close()


def wait_for_prefect_api(url: str, bound_s: float = SERVER_START_BOUND_S) -> None:
    """Poll ``url``/health until it answers 200; pytest.fail with the server's log after ``bound_s``."""
    deadline = time.monotonic() + bound_s
    process = _server.get("process")
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        exited = process is not None and process.poll() is not None
        if exited or time.monotonic() > deadline:
            log = _server["log_path"].read_text()[-3000:] if "log_path" in _server else ""
            pytest.fail(f"the shared Prefect server at {url} did not answer within {bound_s} s "
                        f"(exited: {exited}):\n{log}")
        time.sleep(0.5)


@pytest.fixture(scope="session", autouse=True)
def prefect_api_url() -> str:
    """The shared Prefect API's URL, once it answers (every test may run a flow)."""
    url = os.environ["PREFECT_API_URL"] if "url" not in _server else _server["url"]
    wait_for_prefect_api(url)
    return url


@pytest.fixture(autouse=True)
def environment_restored_after_each_test():
    """Put back every environment variable a test changed. A CLI command run in-process (typer's
    CliRunner) exports the database it opened (``ACTIVELABEL_DATABASE_URL``) and Prefect's logging
    settings, as it must for its own flows; left in ``os.environ``, they would send every later
    test's subprocesses to that test's database."""
    before = dict(os.environ)
    yield
    for key in set(os.environ) - set(before):
        del os.environ[key]
    for key, value in before.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
