"""A real Label Studio server for the tests in this folder.

Uses LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY when set (CI starts the server with
.ci/labelstudio.sh); otherwise starts one itself through the same script, so
``python -m pytest tests/labelstudio`` works on a fresh machine. When the server's venv cannot
be created (no package index), the tests are skipped with the reason — unless
ACTIVELABEL_REQUIRE_LABELSTUDIO=1, which turns that into a failure.

Under pytest-xdist without a given server, each worker starts its own Label Studio on a free
port (two on the one default port would refuse each other); the server's venv is created once,
under a file lock.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from activelabel.annotation.base import TaskRequest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".ci" / "labelstudio.sh"
LABELS = ["cat", "dog", "bird"]


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


def _server_env() -> dict:
    """The start script's environment: under xdist, a free port of this worker's own."""
    env = dict(os.environ)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            env["ACTIVELABEL_TEST_LS_PORT"] = str(s.getsockname()[1])
    return env


def _unavailable(reason: str) -> None:
    if os.environ.get("ACTIVELABEL_REQUIRE_LABELSTUDIO") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def ls_server(tmp_path_factory) -> Server:
    url, key = os.environ.get("LABEL_STUDIO_URL"), os.environ.get("LABEL_STUDIO_API_KEY")
    if url and key:
        root = os.environ.get("ACTIVELABEL_TEST_LS_DOCUMENT_ROOT")
        yield Server(url.rstrip("/"), key, Path(root) if root else None)
        return

    venv = _ensure_venv()
    if venv.returncode != 0:
        _unavailable(f"no Label Studio server: LABEL_STUDIO_URL is unset and the server's venv "
                     f"could not be created: {(venv.stderr or venv.stdout).strip()[-800:]}")
    work = tmp_path_factory.mktemp("labelstudio")
    started = _bash(
        'start_labelstudio "$1" >&2; printf "%s\\n" "$LS_PID" "$LABEL_STUDIO_URL" '
        '"$LABEL_STUDIO_API_KEY" "$ACTIVELABEL_TEST_LS_DOCUMENT_ROOT"',
        str(work), timeout=1200, env=_server_env(),  # the script bounds its own wait (900 s)
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


@pytest.fixture(scope="session")
def ls_client(ls_server: Server):
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=ls_server.url, api_key=ls_server.api_key)


@pytest.fixture
def project_title(request) -> str:
    """A title no other test uses, so each test has its own project."""
    return f"t-{request.node.name[5:35]}-{uuid.uuid4().hex[:8]}"  # <= 50 chars


@pytest.fixture
def make_annotator(ls_server: Server, ls_client, project_title):
    """Build annotators on this test's own project; the project is deleted afterwards."""
    from activelabel.annotation.labelstudio import LabelStudioAnnotator, png_data_uri

    made: list = []

    def make(**kwargs):
        import numpy as np

        options = dict(
            project_title=project_title,
            labels=LABELS,
            image_source=lambda uri: png_data_uri(np.full((1, 4, 4), 0.5)),
            model_version="r1-test",
        )
        options.update(kwargs)
        url = options.pop("url", ls_server.url)
        key = options.pop("api_key", ls_server.api_key)
        annotator = LabelStudioAnnotator(url, key, **options)
        made.append(annotator)
        return annotator

    yield make
    ids = {a._project_id for a in made if a._project_id is not None}
    for project_id in ids:
        try:
            ls_client.projects.delete(id=project_id)
        except Exception:  # best effort: a leftover project does not affect other tests
            pass


def task_requests(confidences: list[float], *, first_id: int = 100, labels=LABELS) -> list[TaskRequest]:
    """One request per confidence; uncertainty = 1 - confidence, rank by ascending confidence."""
    order = sorted(range(len(confidences)), key=lambda i: confidences[i])
    rank = {i: r for r, i in enumerate(order)}
    return [
        TaskRequest(
            sample_id=first_id + i, uri=f"img/{first_id + i}.png", rank=rank[i], score=round(1 - c, 6),
            predicted_label=labels[i % len(labels)], confidence=c,
        )
        for i, c in enumerate(confidences)
    ]


@pytest.fixture
def make_tasks():
    return task_requests


def choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


@pytest.fixture
def choice_result():
    return choice


@pytest.fixture
def ls_campaign(ls_server: Server, ls_client, tmp_path, monkeypatch):
    """Make Label Studio campaigns on digits, each with its own SQLite database:
    ``make(prefix, **settings) -> (config, engine, campaign_id)``. Their projects are deleted after."""
    from activelabel.campaign import CampaignConfig, lookup, prepare_campaign
    from activelabel.storage import open_engine

    monkeypatch.setenv("LABEL_STUDIO_URL", ls_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_server.api_key)
    made: list[str] = []

    def make(prefix: str, **settings):
        config = CampaignConfig(name=f"{prefix}-{uuid.uuid4().hex[:10]}", annotator="labelstudio", device="cpu",
                                **settings)
        engine = open_engine(f"sqlite:///{tmp_path / (config.name + '.db')}")
        prepare_campaign(engine, config)
        made.append(config.labelstudio_project)
        return config, engine, lookup.campaign_id(engine, config.name)

    yield make
    for project in ls_client.projects.list():
        if project.title in made:
            ls_client.projects.delete(id=project.id)
