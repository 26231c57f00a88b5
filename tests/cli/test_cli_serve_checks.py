"""`activelabel serve` refuses up front, on one line with exit 1, what would make every tick fail.

Its own arguments and the Prefect server are checked before the flow stack is imported; the
stored campaign's annotator (Label Studio's URL, key and server) before anything is served, so
no deployment is left on the server. Real subprocesses, a real database and the suite's shared
Prefect server (tests/conftest.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid

import pytest

from activelabel.campaign import CampaignConfig, prepare_campaign
from activelabel.storage import open_engine

BOUND_S = 300  # one `serve` start on a loaded machine: imports, a database, a refusal


def _serve(args: list[str], env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "activelabel.cli", "serve", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=BOUND_S)


def _error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a refusal prints (stderr), after checking it is the only output."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert result.stdout.strip() == ""
    return lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_arguments_and_prefect_server_are_refused_before_anything_else(tmp_path, prefect_api_url):
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    # No such campaign and no database: these checks come first, so neither is looked at.
    neither = _error_line(_serve(["nowhere"], env, tmp_path))
    assert neither == "error: give exactly one of --interval SECONDS or --cron 'EXPRESSION'"
    both = _error_line(_serve(["nowhere", "--interval", "60", "--cron", "0 3 * * *"], env, tmp_path))
    assert both == neither
    assert _error_line(_serve(["nowhere", "--interval", "0"], env, tmp_path)) == (
        "error: --interval must be a positive number of seconds, got 0.0")
    no_server = _error_line(_serve(["nowhere", "--interval", "60"], env, tmp_path))
    assert no_server.startswith("error: schedules need a Prefect server: run `prefect server start`")
    dead = f"http://127.0.0.1:{_free_port()}/api"
    unreachable = _error_line(_serve(["nowhere", "--interval", "60"], {**env, "PREFECT_API_URL": dead}, tmp_path))
    assert unreachable.startswith(f"error: cannot reach the Prefect server at PREFECT_API_URL={dead} (")
    assert not (tmp_path / "activelabel.db").exists()  # nothing was opened or created


def _deployment_exists(name: str) -> bool:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(f"activelabel-scheduled-round/{name}")
        except ObjectNotFound:
            return False
    return True


@pytest.mark.prefect_server
def test_serve_refuses_a_label_studio_campaign_without_its_server_as_run_does(tmp_path, prefect_api_url):
    name = f"serve-ls-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 'campaign.db'}"
    prepare_campaign(open_engine(url), CampaignConfig(
        name=name, strategy="margin", rounds=2, batch_size=5, initial_labeled=10, mc_samples=2, epochs=1,
        device="cpu", annotator="labelstudio",
    ))
    base = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    env = {**base, "PREFECT_API_URL": prefect_api_url, "ACTIVELABEL_DATABASE_URL": url}

    assert _error_line(_serve([name, "--interval", "30"], env, tmp_path)) == (
        "error: LABEL_STUDIO_URL is not set: export the Label Studio server's URL")
    no_key = {**env, "LABEL_STUDIO_URL": "http://127.0.0.1:1"}
    assert _error_line(_serve([name, "--interval", "30"], no_key, tmp_path)) == (
        "error: LABEL_STUDIO_API_KEY is not set: export a Label Studio access token")
    dead = f"http://127.0.0.1:{_free_port()}"
    down = _error_line(_serve([name, "--cron", "0 3 * * *"],
                              {**env, "LABEL_STUDIO_URL": dead, "LABEL_STUDIO_API_KEY": "not-a-real-token"}, tmp_path))
    assert down.startswith(f"error: Label Studio at {dead} is unreachable")
    assert "not-a-real-token" not in down
    assert not _deployment_exists(name)  # refused before anything was served


def test_the_stop_line_says_what_stays_and_only_a_cut_round_is_a_stop(capsys):
    import signal

    from activelabel import stop
    from activelabel.cli import _serve_stopped
    from activelabel.flows.schedule import ServeEnd

    again = "activelabel serve nightly --interval 60"
    _serve_stopped(ServeEnd(int(signal.SIGTERM), removed=True), "nightly", again)
    assert capsys.readouterr().err.strip() == (
        "serve stopped by SIGTERM: the schedule of campaign 'nightly' is removed from the Prefect server; "
        f"rounds continue with `{again}`")

    _serve_stopped(ServeEnd(int(signal.SIGINT), removed=False), "nightly", again)
    assert "the deployment activelabel-scheduled-round/nightly stays on the Prefect server: remove it with " \
           "`prefect deployment delete 'activelabel-scheduled-round/nightly'`" in capsys.readouterr().err

    # A tick cut a round mid-way: the same line, then the stop that `run` reports (resume hint, 130).
    with pytest.raises(stop.Stopped) as stopped:
        _serve_stopped(ServeEnd(int(signal.SIGINT), removed=True, interrupted="round 3 at step training"),
                       "nightly", again)
    assert stopped.value.signum == signal.SIGINT
    assert "; round 3 at step training was interrupted; rounds continue with" in capsys.readouterr().err


def test_a_stop_once_the_campaign_has_its_rounds_says_so_instead_of_rounds_continue(capsys):
    import signal

    from activelabel.cli import _serve_stopped
    from activelabel.flows.schedule import ServeEnd

    again = "activelabel serve nightly --interval 60 --rounds 3"
    more = "activelabel serve nightly --interval 60 --rounds 4"
    _serve_stopped(ServeEnd(int(signal.SIGTERM), removed=True), "nightly", again, complete=(3, 3, more))
    assert capsys.readouterr().err.strip() == (
        "serve stopped by SIGTERM: the schedule of campaign 'nightly' is removed from the Prefect server; "
        "campaign 'nightly' has its 3 rounds; for more, raise `rounds` in the campaign file or pass --rounds N: "
        f"`{more}`")

    # another command took it past what serve was asked for
    _serve_stopped(ServeEnd(int(signal.SIGINT), removed=True), "nightly", again,
                   complete=(5, 3, "activelabel serve nightly --interval 60 --rounds 6"))
    said = capsys.readouterr().err
    assert "; campaign 'nightly' has 5 rounds complete (serve was asked for 3); for more" in said
    assert "rounds continue" not in said
