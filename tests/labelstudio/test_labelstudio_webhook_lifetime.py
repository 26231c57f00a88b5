"""The webhook of ``watch --webhook`` lives as long as the watch: real Label Studio, real CLI.

Ctrl-C (SIGINT) and SIGTERM delete it; a run killed without cleaning up (SIGKILL) leaves it, and
the next start replaces that stale one instead of adding a second.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from activelabel.annotation.webhook import DEFAULT_PATH, SECRET_HEADER
from activelabel.campaign import prepare_campaign
from activelabel.campaign.data import campaign_data
from activelabel.campaign.setup import build_annotator
from activelabel.campaign.file import load_campaign_file
from activelabel.storage import open_engine
from tests_support_campaignfile import use_label_studio, write_campaign_file
from tests_support_owndata import write_unlabeled_pool
from tests_support_lsserver import delete_projects_titled

pytestmark = pytest.mark.labelstudio
REPO = Path(__file__).resolve().parents[2]
START_BOUND = 240.0  # seconds for a CLI start (imports, database, Label Studio) on a busy machine
STOP_BOUND = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ours(ls_client, project_id: int) -> list:
    return [w for w in ls_client.webhooks.list(project=str(project_id))
            if w.project == project_id and urlsplit(w.url).path == DEFAULT_PATH
            and SECRET_HEADER in (w.headers or {})]


def _wait(what: str, check, bound: float, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        if proc.poll() is not None:
            pytest.fail(f"watch ended (rc {proc.returncode}) before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(1.0)
    pytest.fail(f"no {what} within {bound:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def campaign(ls_server, ls_client, tmp_path, monkeypatch):
    db_url = use_label_studio(monkeypatch, ls_server, tmp_path)
    write_unlabeled_pool(tmp_path / "images", count=20)
    name = f"relabel-hook-{uuid.uuid4().hex[:8]}"
    path = write_campaign_file(tmp_path / "campaign.toml", name, settings={
        "campaign.batch_size": 4, "data.evaluation_size": 4, "campaign.device": "cpu"})
    config, _ = load_campaign_file(path)
    prepare_campaign(open_engine(db_url), config)
    project_id = build_annotator(config, campaign_data(config)).ensure_project()
    try:
        yield name, project_id, tmp_path
    finally:
        delete_projects_titled(ls_client, config.labelstudio_project)


def _watch(name: str, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "activelabel.cli", "watch", name, "--webhook", "--webhook-port", str(port),
         "--poll-seconds", "600"],
        cwd=log.parent, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen, sig: int) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=STOP_BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
        pytest.fail(f"watch did not stop within {STOP_BOUND:.0f} s of signal {sig}")


def test_webhook_is_deleted_on_ctrl_c_and_sigterm_and_a_stale_one_is_replaced(campaign, ls_client) -> None:
    name, project_id, folder = campaign
    log = folder / "watch1.log"
    port = _free_port()
    proc = _watch(name, port, log)
    try:
        hooks = _wait("webhook listed", lambda: _ours(ls_client, project_id), START_BOUND, proc, log)
        assert [urlsplit(h.url).port for h in hooks] == [port]
        _wait("round waiting", lambda: "waits for labels" in log.read_text(), START_BOUND, proc, log)
        _stop(proc, signal.SIGINT)
        assert "Traceback" not in log.read_text() or "KeyboardInterrupt" in log.read_text()
        assert _ours(ls_client, project_id) == [], log.read_text()[-3000:]

        # Killed without a chance to clean up: the webhook stays ...
        killed_port = _free_port()
        proc = _watch(name, killed_port, folder / "watch2.log")
        _wait("webhook listed", lambda: _ours(ls_client, project_id), START_BOUND, proc, folder / "watch2.log")
        proc.kill()
        proc.wait(timeout=30)
        assert [urlsplit(h.url).port for h in _ours(ls_client, project_id)] == [killed_port]

        # ... and the next start replaces it (another port here), leaving exactly one.
        port = _free_port()
        log = folder / "watch3.log"
        proc = _watch(name, port, log)
        hooks = _wait("the new webhook listed",
                      lambda: [h for h in _ours(ls_client, project_id) if urlsplit(h.url).port == port],
                      START_BOUND, proc, log)
        assert [urlsplit(h.url).port for h in _ours(ls_client, project_id)] == [port] and len(hooks) == 1
        # it only waits for labels: a stop there is its normal way out (exit 0)
        assert _stop(proc, signal.SIGTERM) == 0, log.read_text()[-3000:]
        assert _ours(ls_client, project_id) == [], log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_a_watch_with_nothing_left_to_wait_for_registers_no_webhook(campaign, ls_client, caplog):
    # trial 16 F3: a watch whose rounds were all complete said "Listening for Label Studio
    # webhooks ..." and registered a webhook, then ended at once
    import logging

    from activelabel.flows.watch import watch_campaign

    name, project_id, _ = campaign
    engine = open_engine(os.environ["ACTIVELABEL_DATABASE_URL"])
    with caplog.at_level(logging.INFO):
        done = watch_campaign(engine, name, 0, poll_seconds=1.0, webhook=("127.0.0.1", 0),
                              on_round=lambda summary: None)
    assert done == 0
    assert "Listening for Label Studio webhooks" not in caplog.text
    assert _ours(ls_client, project_id) == []


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_a_stop_while_label_studio_makes_the_webhook_deletes_it(campaign, ls_client, monkeypatch, stop) -> None:
    """A Ctrl-C or SIGTERM landing after Label Studio made the webhook but before its id came back
    (CI once sent SIGTERM the moment the webhook was listed) still leaves no webhook behind. The
    signal's timing is the one thing mocked: the stop is raised right after the real create
    returns, since a real signal cannot be made to land in that window on demand."""
    from activelabel.annotation import webhook as webhook_module
    from activelabel.campaign.lookup import campaign_id as campaign_id_of
    from activelabel.flows.watch import _start_webhook

    name, project_id, _ = campaign
    real_register = webhook_module.register_webhook

    def made_then_stopped(client, project, url, secret):
        real_register(client, project, url, secret)
        assert [urlsplit(h.url).port for h in _ours(ls_client, project_id)] == [port]  # it exists in Label Studio
        raise stop()

    monkeypatch.setattr(webhook_module, "register_webhook", made_then_stopped)
    engine = open_engine(os.environ["ACTIVELABEL_DATABASE_URL"])
    port = _free_port()
    started: list[tuple] = []
    with pytest.raises(stop):
        _start_webhook(engine, campaign_id_of(engine, name), ("127.0.0.1", port), started)
    assert started == []
    assert _ours(ls_client, project_id) == []
    with socket.socket() as s:  # the receiver stopped: its port is free again
        s.bind(("127.0.0.1", port))
