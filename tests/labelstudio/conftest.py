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

import os
import uuid
from pathlib import Path

import pytest

from activelabel.annotation.base import TaskRequest

from tests_support_lsserver import Server, delete_project, delete_projects_titled, own_server

LABELS = ["cat", "dog", "bird"]


@pytest.fixture(scope="session")
def ls_server(tmp_path_factory) -> Server:
    url, key = os.environ.get("LABEL_STUDIO_URL"), os.environ.get("LABEL_STUDIO_API_KEY")
    if url and key:
        root = os.environ.get("ACTIVELABEL_TEST_LS_DOCUMENT_ROOT")
        yield Server(url.rstrip("/"), key, Path(root) if root else None)
        return

    # Under xdist each worker needs a port of its own (two on the one default port refuse each other).
    worker = bool(os.environ.get("PYTEST_XDIST_WORKER"))
    yield from own_server(tmp_path_factory.mktemp("labelstudio"), free_port=worker)


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
            delete_project(ls_client, project_id)
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
    delete_projects_titled(ls_client, *made)
