"""Failures name the server and what was being done, and never carry the API key."""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from activelabel.annotation.labelstudio import (
    LabelStudioAnnotator,
    LabelStudioAuthError,
    LabelStudioUnavailableError,
)
from activelabel.errors import ActiveLabelError, ConfigError

pytestmark = pytest.mark.labelstudio

SECRET = "wrong-token-9f3c2a7e51d04b68"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _annotator(url: str, **kwargs) -> LabelStudioAnnotator:
    return LabelStudioAnnotator(
        url, SECRET, project_title="errors", labels=["cat", "dog"], image_source=str,
        max_retries=0, **kwargs,
    )


def test_wrong_token_is_an_auth_error_without_the_token(ls_server, make_annotator, make_tasks, caplog):
    caplog.set_level(logging.DEBUG)
    annotator = make_annotator(api_key=SECRET)

    with pytest.raises(LabelStudioAuthError) as caught:
        annotator.push(make_tasks([0.5]), round_index=2)

    message = str(caught.value)
    assert message.startswith(f"authentication failed at {ls_server.url}: check LABEL_STUDIO_API_KEY")
    assert "HTTP 401" in message
    assert isinstance(caught.value, ActiveLabelError)
    assert caught.value.__cause__ is None and caught.value.__context__ is not None  # suppressed
    assert SECRET not in message
    assert SECRET not in repr(annotator)
    assert SECRET not in caplog.text


def test_unreachable_server_is_unavailable_naming_the_url(make_tasks, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{_free_port()}"
    annotator = _annotator(url)

    with pytest.raises(LabelStudioUnavailableError) as caught:
        annotator.push(make_tasks([0.5]), round_index=3)

    message = str(caught.value)
    assert message.startswith(f"Label Studio at {url} is unreachable while pushing round 3: looking up project")
    assert SECRET not in message and SECRET not in caplog.text
    with pytest.raises(LabelStudioUnavailableError, match=f"{url} is unreachable while pulling round 3"):
        annotator.pull(make_tasks([0.5]), round_index=3)


def test_server_that_never_answers_times_out():
    """A real socket that accepts and never replies: a real server cannot be made to hang."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        annotator = _annotator(url, timeout=0.5)
        with pytest.raises(LabelStudioUnavailableError, match=f"{url} timed out while looking up project"):
            annotator.ensure_project()


def test_server_error_is_unavailable():
    """A stand-in HTTP server answering 500: Label Studio cannot be made to fail on demand."""

    class Failing(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"detail": "boom"}')

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(LabelStudioUnavailableError, match=r"failed while looking up project .*HTTP 500"):
            _annotator(url).ensure_project()
    finally:
        server.shutdown()
        server.server_close()


def test_from_env_reads_url_and_key_and_hides_the_key():
    env = {"LABEL_STUDIO_URL": "http://127.0.0.1:1/", "LABEL_STUDIO_API_KEY": SECRET}
    annotator = LabelStudioAnnotator.from_env(
        project_title="p", labels=["a", "b"], image_source=str, environ=env,
    )
    assert annotator.url == "http://127.0.0.1:1"
    assert SECRET not in repr(annotator) and SECRET not in str(vars(annotator).get("url"))

    with pytest.raises(ConfigError, match="LABEL_STUDIO_API_KEY is not set"):
        LabelStudioAnnotator.from_env(project_title="p", labels=["a"], image_source=str,
                                      environ={"LABEL_STUDIO_URL": "http://x"})
    with pytest.raises(ConfigError, match="LABEL_STUDIO_URL is not set"):
        LabelStudioAnnotator.from_env(project_title="p", labels=["a"], image_source=str, environ={})


@pytest.mark.parametrize("labels", [[], ["a", "a"], ["a", ""]])
def test_bad_label_sets_are_refused(labels):
    with pytest.raises(ConfigError, match="distinct non-empty"):
        LabelStudioAnnotator("http://127.0.0.1:1", SECRET, project_title="p", labels=labels, image_source=str)
