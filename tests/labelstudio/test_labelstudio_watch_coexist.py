"""Two watches on one Label Studio project keep one webhook each; a dead one is still replaced.

Real Label Studio, two real receivers: registering the second receiver probes the first one's URL
(``HEAD``, bounded by ``PROBE_SECONDS``); it answers, so its webhook is kept and both receivers
are woken by one annotation. A webhook whose receiver stopped (nothing listens on its port any
more) is deleted by the next registration, as before.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from activelabel.annotation.webhook import (
    PROBE_SECONDS,
    SECRET_HEADER,
    WebhookReceiver,
    generate_secret,
    receiver_answers,
    register_webhook,
    unregister_webhook,
)
from activelabel.storage import Round, open_engine, session_scope
from test_labelstudio_webhook_lifetime import (  # a real campaign on the real Label Studio
    START_BOUND,
    _ours,
    _stop,
    _wait,
    campaign,  # noqa: F401  (the fixture)
)

WAKE_BOUND = 30.0  # seconds for Label Studio to deliver a webhook on a busy machine


def _hooks(ls_client, project_id: int) -> dict[int, str]:
    return {w.id: w.url for w in ls_client.webhooks.list(project=str(project_id)) if w.project == project_id}


def _dead_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_probe_is_answered_by_a_receiver_and_records_nothing() -> None:
    with WebhookReceiver(generate_secret()) as receiver:
        assert receiver_answers(receiver.url) is True
        connection = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=5)
        connection.request("HEAD", "/activelabel/webhook")
        assert connection.getresponse().status == 200
        connection.close()
        assert receiver.events_received == 0
        assert receiver.wait_for_event(0.05) is False
    started = time.monotonic()
    assert receiver_answers(receiver.url) is False  # stopped: connection refused
    assert receiver_answers(f"http://127.0.0.1:{_dead_port()}/activelabel/webhook") is False
    assert time.monotonic() - started < 2 * PROBE_SECONDS + 5


def test_a_silent_listener_counts_as_gone_within_the_probe_bound() -> None:
    """Something accepts the connection but never answers (a hung process): stale after the bound."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        started = time.monotonic()
        assert receiver_answers(f"http://127.0.0.1:{silent.getsockname()[1]}/activelabel/webhook", timeout=1.0) is False
        assert time.monotonic() - started < 10


@pytest.mark.labelstudio
def test_a_second_receiver_keeps_the_first_ones_webhook(make_annotator, make_tasks, ls_client, choice_result):
    annotator = make_annotator()
    requests = make_tasks([0.4, 0.7])
    ids = annotator.push(requests)
    project_id = annotator.project_id
    first_secret, second_secret = generate_secret(), generate_secret()

    with WebhookReceiver(first_secret) as first, WebhookReceiver(second_secret) as second:
        first_id = register_webhook(annotator.client, project_id, first.url, first_secret)
        second_id = register_webhook(annotator.client, project_id, second.url, second_secret)
        assert first_id != second_id
        assert _hooks(ls_client, project_id) == {first_id: first.url, second_id: second.url}
        # Registering the first again (a restart on the same port) keeps the second one too.
        assert register_webhook(annotator.client, project_id, first.url, first_secret) == first_id
        assert _hooks(ls_client, project_id) == {first_id: first.url, second_id: second.url}

        ls_client.annotations.create(id=int(ids[requests[0].sample_id]), result=choice_result("dog"))
        assert first.wait_for_event(WAKE_BOUND) is True
        assert second.wait_for_event(WAKE_BOUND) is True
        assert first.last_event["sample_id"] == second.last_event["sample_id"] == requests[0].sample_id

        # The first watch ends: it deletes its own webhook only.
        assert unregister_webhook(annotator.client, first_id) is True
        assert _hooks(ls_client, project_id) == {second_id: second.url}
    assert all(h == {SECRET_HEADER: second_secret} for h in
               [w.headers for w in ls_client.webhooks.list(project=str(project_id)) if w.project == project_id])


@pytest.mark.labelstudio
def test_a_webhook_whose_receiver_is_gone_is_replaced(make_annotator, ls_client):
    annotator = make_annotator()
    project_id = annotator.project_id
    killed = WebhookReceiver(generate_secret()).start()
    killed_secret = generate_secret()
    stale_id = register_webhook(annotator.client, project_id, killed.url, killed_secret)
    killed.stop()  # as after SIGKILL: the webhook stays, nothing listens on its port

    secret = generate_secret()
    with WebhookReceiver(secret) as live:
        started = time.monotonic()
        live_id = register_webhook(annotator.client, project_id, live.url, secret)
        assert time.monotonic() - started < PROBE_SECONDS + 60  # one refused probe, a few API calls
        assert _hooks(ls_client, project_id) == {live_id: live.url}
        assert live_id != stale_id
        unregister_webhook(annotator.client, live_id)
    assert _hooks(ls_client, project_id) == {}


# -- two real `watch --webhook` processes on one campaign --------------------------------------


def _watch_any_port(name: str, log: Path) -> subprocess.Popen:
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "activelabel.cli", "watch", name, "--webhook", "--webhook-port", "0",
         "--poll-seconds", "600"],
        cwd=log.parent, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )


@pytest.mark.labelstudio
def test_two_watches_on_one_campaign_keep_a_webhook_each_and_run_the_round_once(campaign, ls_client) -> None:  # noqa: F811
    name, project_id, folder = campaign
    first_log, second_log = folder / "watch-a.log", folder / "watch-b.log"
    first = _watch_any_port(name, first_log)
    second = None
    try:
        _wait("first webhook listed", lambda: len(_ours(ls_client, project_id)) == 1, START_BOUND, first, first_log)
        _wait("round waiting", lambda: "waits for labels" in first_log.read_text(), START_BOUND, first, first_log)
        second = _watch_any_port(name, second_log)
        hooks = _wait("second webhook listed", lambda: (h := _ours(ls_client, project_id)) and len(h) == 2 and h,
                      START_BOUND, second, second_log)
        assert len({h.url for h in hooks}) == 2  # two receivers, two ports, both kept
        _wait("second watch waiting", lambda: "waits for labels" in second_log.read_text()
              or "this watch waits" in " ".join(second_log.read_text().split()), START_BOUND, second, second_log)
        engine = open_engine(os.environ["ACTIVELABEL_DATABASE_URL"])
        with session_scope(engine) as session:
            assert session.scalar(select(func.count()).select_from(Round)) == 1
        assert len(list(ls_client.tasks.list(project=project_id))) == 4  # the evaluation batch, once

        # both only wait (for labels, or on the other's round): a stop there is the normal way out, exit 0
        assert _stop(first, signal.SIGTERM) == 0, first_log.read_text()[-3000:]
        left = _ours(ls_client, project_id)
        assert [h.url for h in left] == [h.url for h in hooks if h.id == left[0].id] and len(left) == 1
        assert second.poll() is None  # still watching, on its own webhook
        assert _stop(second, signal.SIGTERM) == 0, second_log.read_text()[-3000:]
        assert _ours(ls_client, project_id) == []
        for log in (first_log, second_log):
            assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
        # --webhook-port 0: each watch says the address it picked, as registered in Label Studio.
        said = {re.search(r"Listening for Label Studio webhooks on (\S+) ", log.read_text()).group(1)
                for log in (first_log, second_log)}
        assert said == {h.url for h in hooks}
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
