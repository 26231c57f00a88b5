"""The webhook receiver (FastAPI on uvicorn, no Label Studio needed) and its registration in a real Label Studio."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import urllib.error
import urllib.request

import pytest

from activelabel.annotation.webhook import (
    MAX_BODY_BYTES,
    SECRET_HEADER,
    LabelStudioWebhookError,
    WebhookReceiver,
    generate_secret,
    register_webhook,
)
from activelabel.errors import ActiveLabelError, ConfigError

SECRET = "s3cret-for-the-webhook-tests-7f1c0a9d"
EVENT = {
    "action": "ANNOTATION_CREATED",
    "project": {"id": 7},
    "task": {"id": 11, "data": {"sample_id": 105, "image": "..."}},
    "annotation": {"id": 42, "result": []},
}


@pytest.fixture
def receiver():
    with WebhookReceiver(SECRET) as started:
        yield started


def _post(url: str, body: bytes | str, headers: dict | None = None, method: str = "POST") -> tuple[int, dict]:
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else {}


def _auth(secret: str = SECRET) -> dict:
    return {SECRET_HEADER: secret}


# -- receiver, no Label Studio needed ---------------------------------------------------------


def test_binds_loopback_by_default_on_a_free_port(receiver):
    assert receiver.url == f"http://127.0.0.1:{receiver.port}/activelabel/webhook"
    assert receiver.port > 0
    assert SECRET not in repr(receiver)


@pytest.mark.parametrize("headers", [{}, _auth("wrong-secret"), _auth(SECRET + "x"), _auth("")])
def test_missing_or_wrong_secret_is_401_and_changes_nothing(receiver, headers, caplog):
    caplog.set_level(logging.DEBUG)
    status, body = _post(receiver.url, json.dumps(EVENT), headers)
    assert status == 401
    assert body["ok"] is False
    assert receiver.events_received == 0
    assert receiver.last_event is None
    assert receiver.wait_for_event(0.1) is False
    assert "401" in caplog.text and SECRET not in caplog.text


@pytest.mark.parametrize("body", ["not json", "[]", "{}", '{"action": 3}', '{"action": ""}', "\xff"])
def test_bad_body_is_400_and_changes_nothing(receiver, body):
    raw = b"\xff\xfe" if body == "\xff" else body.encode()
    status, answer = _post(receiver.url, raw, _auth())
    assert status == 400
    assert answer["ok"] is False
    assert receiver.events_received == 0
    assert receiver.wait_for_event(0.1) is False


def test_valid_event_is_recorded_and_wakes_the_waiter_once(receiver, caplog):
    caplog.set_level(logging.DEBUG)
    assert receiver.wait_for_event(0.05) is False

    assert _post(receiver.url, json.dumps(EVENT), _auth()) == (200, {"ok": True})

    assert receiver.wait_for_event(2) is True
    assert receiver.wait_for_event(0.1) is False  # cleared by the first wait
    assert receiver.events_received == 1
    event = receiver.last_event
    assert (event["action"], event["sample_id"], event["annotation_id"], event["task_id"], event["project_id"]) == (
        "ANNOTATION_CREATED", 105, 42, 11, 7)
    assert "ANNOTATION_CREATED" in caplog.text and SECRET not in caplog.text

    # Two more events (one without task/annotation) coalesce into one wake-up.
    assert _post(receiver.url, json.dumps({**EVENT, "action": "ANNOTATION_UPDATED"}), _auth())[0] == 200
    assert _post(receiver.url, json.dumps({"action": "PROJECT_UPDATED"}), _auth())[0] == 200
    assert receiver.wait_for_event(2) is True
    assert receiver.wait_for_event(0.05) is False
    assert receiver.events_received == 3
    assert receiver.action_counts == {"ANNOTATION_CREATED": 1, "ANNOTATION_UPDATED": 1, "PROJECT_UPDATED": 1}
    assert receiver.last_event["sample_id"] is None and receiver.last_event["action"] == "PROJECT_UPDATED"
    assert receiver.pop_sample_ids() == {105}
    assert receiver.pop_sample_ids() == set()
    assert receiver.pop_annotation_ids() == {42}


def test_other_paths_are_404_and_other_methods_405(receiver):
    base = receiver.url.rsplit("/activelabel/webhook", 1)[0]
    assert _post(base + "/elsewhere", json.dumps(EVENT), _auth())[0] == 404
    assert _post(base + "/", json.dumps(EVENT), _auth())[0] == 404
    assert _post(base + "/elsewhere", b"", method="GET")[0] == 404
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        status, _ = _post(receiver.url, json.dumps(EVENT) if method != "GET" else b"", _auth(), method=method)
        assert status == 405, method
    assert receiver.events_received == 0


def test_body_over_5_mb_is_413_without_reading_it(receiver):
    connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
    try:
        connection.putrequest("POST", "/activelabel/webhook")
        connection.putheader(SECRET_HEADER, SECRET)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        connection.endheaders()
        connection.send(b'{"action": "ANNOTATION_CREATED", "pad": "')  # then nothing more
        response = connection.getresponse()  # answered at once, not after 5 MB
        assert response.status == 413
        assert json.loads(response.read())["ok"] is False
    finally:
        connection.close()
    assert receiver.events_received == 0
    assert receiver.wait_for_event(0.05) is False


def test_chunked_body_is_411_and_a_body_cut_short_records_nothing(receiver):
    connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
    try:
        connection.request("POST", "/activelabel/webhook", body=iter([json.dumps(EVENT).encode()]),
                           headers={SECRET_HEADER: SECRET, "Content-Type": "application/json"},
                           encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 411
        assert json.loads(response.read()) == {"ok": False,
                                               "error": "chunked bodies are not accepted; send Content-Length"}
    finally:
        connection.close()

    # A client that announces a body and goes away halfway: nothing is recorded, and the receiver
    # still serves the next request.
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=5) as cut:
        cut.sendall(b"POST /activelabel/webhook HTTP/1.1\r\nHost: x\r\n" + f"{SECRET_HEADER}: {SECRET}\r\n".encode()
                    + b"Content-Length: 100\r\n\r\n{\"action\": \"ANNOTATION_CREATED\"")
    assert _post(receiver.url, json.dumps(EVENT), _auth()) == (200, {"ok": True})
    assert receiver.events_received == 1
    assert receiver.action_counts == {"ANNOTATION_CREATED": 1}


def test_the_liveness_probe_needs_no_secret_and_records_nothing(receiver):
    connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
    try:
        connection.request("HEAD", "/activelabel/webhook")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    assert receiver.events_received == 0
    assert receiver.wait_for_event(0.05) is False


def test_receiver_restarts_and_rejects_bad_settings():
    receiver = WebhookReceiver(generate_secret())
    receiver.start()
    port = receiver.port
    receiver.stop()
    receiver.stop()  # idempotent
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the port was released
    with pytest.raises(ConfigError):
        WebhookReceiver("")
    with pytest.raises(ConfigError):
        WebhookReceiver(SECRET, path="no-slash")
    with WebhookReceiver(SECRET) as first, pytest.raises(ConfigError, match="cannot listen"):
        WebhookReceiver(SECRET, port=first.port).start()


def test_generate_secret_is_random_and_long():
    a, b = generate_secret(), generate_secret()
    assert a != b and len(a) >= 40


def test_register_against_an_unreachable_server_names_the_url_not_the_secret():
    from label_studio_sdk import LabelStudio

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "unreachable-token-1234567890"
    client = LabelStudio(base_url=f"http://127.0.0.1:{port}", api_key=token, timeout=3, max_retries=0)
    with pytest.raises(LabelStudioWebhookError) as caught:
        register_webhook(client, 1, "http://127.0.0.1:9/activelabel/webhook", SECRET)
    message = str(caught.value)
    assert f"http://127.0.0.1:{port}" in message and "unreachable" in message
    assert SECRET not in message and token not in message
    assert isinstance(caught.value, ActiveLabelError)


def test_unregister_against_an_unreachable_server_warns_and_does_not_raise(caplog):
    from label_studio_sdk import LabelStudio

    from activelabel.annotation.webhook import unregister_webhook

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "unreachable-token-1234567890"
    client = LabelStudio(base_url=f"http://127.0.0.1:{port}", api_key=token, timeout=3, max_retries=0)
    with caplog.at_level(logging.WARNING):
        assert unregister_webhook(client, 41) is False
    assert f"http://127.0.0.1:{port}" in caplog.text and "webhook 41 stays registered" in caplog.text
    assert token not in caplog.text


# -- with a real Label Studio -----------------------------------------------------------------


def _project_webhooks(ls_client, project_id: int) -> list:
    return [w for w in ls_client.webhooks.list(project=str(project_id)) if w.project == project_id]


@pytest.mark.labelstudio
def test_annotation_in_label_studio_wakes_the_receiver(make_annotator, make_tasks, ls_client, choice_result, caplog):
    caplog.set_level(logging.DEBUG)
    annotator = make_annotator()
    requests = make_tasks([0.4, 0.7])
    ids = annotator.push(requests)
    project_id = annotator.project_id
    secret = generate_secret()

    with WebhookReceiver(secret) as receiver:
        hook_id = register_webhook(annotator.client, project_id, receiver.url, secret)
        assert register_webhook(annotator.client, project_id, receiver.url, secret) == hook_id
        hooks = _project_webhooks(ls_client, project_id)
        assert [w.id for w in hooks] == [hook_id]
        hook = hooks[0]
        assert sorted(hook.actions) == ["ANNOTATIONS_DELETED", "ANNOTATION_CREATED", "ANNOTATION_UPDATED"]
        assert (hook.url, hook.send_payload, hook.is_active, hook.send_for_all_actions) == (
            receiver.url, True, True, False)
        assert hook.headers == {SECRET_HEADER: secret}
        assert receiver.wait_for_event(0.1) is False

        target = requests[1]
        annotation = ls_client.annotations.create(id=int(ids[target.sample_id]), result=choice_result("dog"))

        assert receiver.wait_for_event(5) is True
        event = receiver.last_event
        assert event["action"] == "ANNOTATION_CREATED"
        assert event["sample_id"] == target.sample_id
        assert event["annotation_id"] == annotation.id
        assert event["project_id"] == project_id
        assert receiver.events_received == 1

        ls_client.annotations.update(id=annotation.id, result=choice_result("cat"))
        assert receiver.wait_for_event(5) is True
        assert receiver.last_event["action"] == "ANNOTATION_UPDATED"
        assert receiver.action_counts == {"ANNOTATION_CREATED": 1, "ANNOTATION_UPDATED": 1}

        # A deletion wakes the loop too (the sync then drops the vote).
        ls_client.annotations.delete(id=annotation.id)
        assert receiver.wait_for_event(5) is True
        assert receiver.last_event["action"] == "ANNOTATIONS_DELETED"

        # A new secret updates the same webhook; events signed with the old one would be refused.
        rotated = generate_secret()
        assert register_webhook(annotator.client, project_id, receiver.url, rotated) == hook_id
        assert [w.headers for w in _project_webhooks(ls_client, project_id)] == [{SECRET_HEADER: rotated}]
    assert secret not in caplog.text and rotated not in caplog.text


@pytest.mark.labelstudio
def test_register_with_a_wrong_token_names_the_server_not_the_token(ls_server, make_annotator):
    from label_studio_sdk import LabelStudio

    project_id = make_annotator().project_id
    token = "wrong-token-for-the-webhook-test-0042"
    client = LabelStudio(base_url=ls_server.url, api_key=token, max_retries=0)
    with pytest.raises(LabelStudioWebhookError) as caught:
        register_webhook(client, project_id, "http://127.0.0.1:9/activelabel/webhook", SECRET)
    message = str(caught.value)
    assert ls_server.url in message and "HTTP 401" in message
    assert token not in message and SECRET not in message
