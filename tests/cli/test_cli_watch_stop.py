"""Stopping `activelabel watch`: a stop that cuts a round mid-way is a stop (exit 143 and the
resume hint, the round marked at its step); a stop while it only waits is its normal way out
(one plain line saying what continues it, exit 0), as for `serve`.

Real watch processes and signals on one SQLite campaign: round 2 is held in its train step by
``ACTIVELABEL_PAUSE_AT`` for the first; the second waits on a round another live process (this
test's, by its lease row) is running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from sqlalchemy import select

from activelabel.campaign import CampaignConfig, prepare_campaign
from activelabel.campaign.lookup import campaign_id
from activelabel.storage import CampaignLease, Round, RoundStatus, open_engine, session_scope
from activelabel.storage.lease import live_holder

from test_cli import EXE

BOUND_S = 300  # a watch start and a tiny round on a loaded machine


def _watch(name: str, tmp_path: Path, tag: str, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"watch-{tag}.log"
    with open(log, "w") as out:
        return subprocess.Popen([EXE, "watch", name, "--rounds", "2", "--poll-seconds", "1"], cwd=tmp_path,
                                env=env, stdout=subprocess.DEVNULL, stderr=out, start_new_session=True), log


def _until(what: str, check, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + BOUND_S
    while not check():
        assert process.poll() is None, f"watch ended before {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} within {BOUND_S} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.3)


def _stop(process: subprocess.Popen, signum: int) -> int:
    try:
        process.send_signal(signum)
        return process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_stop_mid_round_exits_143_and_a_stop_while_waiting_is_one_plain_line_and_exit_0(tmp_path):
    name = f"watch-stop-{uuid.uuid4().hex[:8]}"
    url = f"sqlite:///{tmp_path / 'campaign.db'}"
    engine = open_engine(url)
    prepare_campaign(engine, CampaignConfig(
        name=name, strategy="margin", rounds=2, batch_size=5, initial_labeled=0, mc_samples=2, epochs=1,
        device="cpu",
    ))
    cid = campaign_id(engine, name)
    env = {**os.environ, "ACTIVELABEL_DATABASE_URL": url, "PREFECT_HOME": str(tmp_path / "prefect-home"),
           "ACTIVELABEL_PAUSE_AT": f"train:{tmp_path / 'never'}", "COLUMNS": "200"}

    def rounds() -> list[tuple]:
        with session_scope(engine) as session:
            return [tuple(r) for r in session.execute(
                select(Round.index, Round.status, Round.failed_step, Round.error).order_by(Round.index))]

    # SIGTERM while round 2 trains: the round is cut, so it is a stop (143, the resume hint).
    cutting, log = _watch(name, tmp_path, "cut", env)
    _until("round 2 in its train step", lambda: len(rounds()) == 2 and rounds()[1][1] == RoundStatus.training
           and live_holder(engine, cid) is not None, cutting, log)
    assert _stop(cutting, signal.SIGTERM) == 143, log.read_text()[-3000:]
    assert log.read_text().splitlines()[-1] == "error: stopped by SIGTERM; run the same command again to resume"
    assert rounds()[1] == (2, RoundStatus.failed, RoundStatus.training, "stopped by SIGTERM"), log.read_text()[-6000:]

    # Ctrl-C while it waits on another live process's round: nothing is cut; one plain line, exit 0.
    with session_scope(engine) as session:
        session.add(CampaignLease(campaign_id=cid, owner=uuid.uuid4().hex, host=socket.gethostname(),
                                  pid=os.getpid(), round_index=2))
    waiting, log = _watch(name, tmp_path, "idle", env)
    _until("the waiting line", lambda: "this watch waits" in " ".join(log.read_text().split()), waiting, log)
    assert _stop(waiting, signal.SIGINT) == 0, log.read_text()[-3000:]
    said = log.read_text()
    assert "error" not in said.lower(), said[-3000:]
    last = said.splitlines()[-1]
    assert last.startswith(f"watch stopped by Ctrl-C while waiting (no round was running): campaign '{name}' "
                           f"has 1 of 2 rounds complete; continue with `activelabel watch "), last
    assert last.endswith(" --rounds 2`"), last
    assert rounds()[1] == (2, RoundStatus.failed, RoundStatus.training, "stopped by SIGTERM")  # untouched
