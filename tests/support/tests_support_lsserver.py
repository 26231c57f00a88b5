"""Label Studio servers for tests: the one given by the environment, or one of the test's own.

Started through .ci/labelstudio.sh, as CI starts its server. The server's venv is created once,
under a file lock, so xdist workers that both need it wait on one another instead of racing.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".ci" / "labelstudio.sh"


@dataclass(frozen=True)
class Server:
    url: str
    api_key: str
    document_root: Path | None


def _bash(script: str, *args: str, timeout: float, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; source {SCRIPT}; {script}", "bash", *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env,
    )


def _ensure_venv() -> subprocess.CompletedProcess:
    """Create the server's venv once: xdist workers that both need it wait on one lock."""
    with open(Path(tempfile.gettempdir()) / "activelabel-ls-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _bash("ensure_labelstudio_venv", timeout=900)


def _server_env(*, free_port: bool) -> dict:
    """The start script's environment; with ``free_port``, a free port of its own."""
    env = dict(os.environ)
    if free_port:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            env["ACTIVELABEL_TEST_LS_PORT"] = str(s.getsockname()[1])
    return env


def unavailable(reason: str) -> None:
    if os.environ.get("ACTIVELABEL_REQUIRE_LABELSTUDIO") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def own_server(work: Path, *, free_port: bool = True) -> Iterator[Server]:
    """Start a Label Studio of this test run's own in ``work`` (through .ci/labelstudio.sh), yield
    it, and stop it. For tests that need a server no other test shares, or none was given."""
    venv = _ensure_venv()
    if venv.returncode != 0:
        unavailable(f"no Label Studio server: none was given (LABEL_STUDIO_URL) or the test needs its own, "
                     f"and the server's venv could not be created: {(venv.stderr or venv.stdout).strip()[-800:]}")
    started = _bash(
        'start_labelstudio "$1" >&2; printf "%s\\n" "$LS_PID" "$LABEL_STUDIO_URL" '
        '"$LABEL_STUDIO_API_KEY" "$ACTIVELABEL_TEST_LS_DOCUMENT_ROOT"',
        str(work), timeout=1200, env=_server_env(free_port=free_port),  # the script bounds its own wait (900 s)
    )
    if started.returncode != 0:
        pytest.fail(f"could not start Label Studio:\n{started.stderr[-3000:]}", pytrace=False)
    pid, url, key, root = started.stdout.split("\n")[:4]
    try:
        yield Server(url, key, Path(root))
    finally:
        _stop(int(pid))


def _stop(pid: int) -> None:
    """Stop the server this fixture started (by its pid only)."""
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(40):
            os.kill(pid, 0)
            time.sleep(0.25)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def delete_project(client: Any, project_id: int) -> None:
    """Delete a Label Studio project, one deletion at a time across this machine's test processes.

    Label Studio 1.23 detaches every Django signal of its server process while it deletes a project,
    and two deletions at once can leave them detached until it restarts: from then on it counts no
    annotation (test_labelstudio_lost_signals.py puts a server of its own into that state on
    purpose). activelabel copes, but the shared server should not change under the other tests
    halfway through a run because two xdist workers cleaned up at the same moment.
    """
    with open(Path(tempfile.gettempdir()) / "activelabel-ls-delete.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client.projects.delete(id=project_id)


def projects_titled(client: Any, title: str) -> list[Any]:
    """The projects with exactly this title, oldest first, each once.

    Listed by title: an unfiltered listing is paginated (30 a page), and other test processes
    creating and deleting projects meanwhile shift rows onto two pages or off both, so a
    project can be seen twice or not at all."""
    found = {p.id: p for p in client.projects.list(title=title) if p.title == title}
    return [found[project_id] for project_id in sorted(found)]


def project_titled(client: Any, title: str) -> Any:
    """The project a campaign with this title uses: the oldest with the title, as activelabel picks."""
    found = projects_titled(client, title)
    assert found, f"no Label Studio project titled {title!r}"
    return found[0]


def delete_projects_titled(client: Any, *titles: str) -> None:
    """Delete every project with one of these titles (one deletion at a time, see :func:`delete_project`)."""
    for title in titles:
        for project in projects_titled(client, title):
            delete_project(client, project.id)
