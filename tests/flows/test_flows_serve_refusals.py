"""A serve whose campaign data is refused says so once, stays up, and goes on once it is fixed.

One real `activelabel serve` (ticking every 2 s, on the suite's shared Prefect server) on a
campaign of generated PNG files whose round 1 `run` did. A labeled image is changed before serve
starts (serve's start check reads no stored file, every tick's round start does), so every tick
is refused from the first one on; then the pool folder is renamed as well (a new fault, said in
full again); then both are put back, and the next tick runs round 2. On serve's terminal: one
full "refused:" line per fault, then a short "still refused:" line per tick, no traceback; on the
Prefect server: one Failed run named Refused per fault, Cancelled runs named "Still refused" for
the repeats, and no round subflow run after the first refusal (a tick after a refused one checks
the data before it starts a round); in the database: nothing started, changed or
duplicated by the refused ticks.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select
from tests_support_campaignfile import write_campaign_file
from tests_support_owndata import write_manifest, write_unlabeled_pool
from tests_support_serve import TICK_LINE, ROUND_BOUND_S, START_BOUND_S, STOP_BOUND_S
from tests_support_serve import start_serve
from tests_support_serve import wait_for

from activelabel.storage import Round, RoundStatus, Sample, Selection, open_engine, session_scope

RUN_BOUND_S = 600  # `activelabel run` of a cold-start round on a loaded machine


def _runs(name: str) -> list:
    """The campaign's flow runs on the Prefect server (ticks and round subflows), oldest first."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
                                     sort=FlowRunSort.EXPECTED_START_TIME_ASC)


@pytest.mark.prefect_server
@pytest.mark.slow
def test_a_refused_tick_says_it_once_serve_stays_up_and_goes_on_once_fixed(tmp_path, prefect_api_url):
    name = f"refusals-{uuid.uuid4().hex[:8]}"
    images = tmp_path / "images"
    truth = write_unlabeled_pool(images, count=30)
    write_manifest(tmp_path / "truth.csv", truth, base=images)
    write_campaign_file(tmp_path / "own.toml", name, simulated=True, labels=sorted(set(truth.values())), settings={
        "campaign.rounds": 2, "campaign.batch_size": 5, "campaign.mc_samples": 2, "campaign.epochs": 1,
        "campaign.strategy": "entropy", "model.fixed_epochs": True, "data.evaluation_size": 0})
    env = {**os.environ, "PREFECT_API_URL": prefect_api_url, "PREFECT_HOME": str(tmp_path / "prefect-client"),
           "COLUMNS": "200"}
    ran = subprocess.run([sys.executable, "-m", "activelabel.cli", "run", "own.toml", "--rounds", "1"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_BOUND_S)
    assert ran.returncode == 0, ran.stderr[-3000:]
    engine = open_engine(f"sqlite:///{tmp_path / 'activelabel.db'}")
    with session_scope(engine) as session:
        uri = session.scalar(select(Sample.uri).join(Selection, Selection.sample_id == Sample.id)
                             .where(Sample.uri.like("%.png")).order_by(Sample.uri))
    changed = images / uri
    original = changed.read_bytes()
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(changed, format="PNG")  # still a PNG, another image

    log = tmp_path / "serve.log"
    serving = start_serve("own.toml", env, log, "--interval", "2")

    def ticks() -> list[str]:
        return [line[9:] for line in log.read_text().splitlines() if re.match(TICK_LINE, line)]

    def refused(after: int, still: int, reason: str):
        def seen() -> bool:
            said = ticks()[after:]
            full = [n for n, t in enumerate(said) if t.startswith(f"tick: refused: {reason}")]
            return bool(full) and sum(t == f"tick: still refused: {reason}" for t in said[full[0]:]) >= still
        return seen

    changed_reason = f"1 labeled image(s) changed since they were labeled (e.g. {changed})"
    pool_reason = f"data.pool: folder or manifest {images} does not exist"
    try:
        wait_for("two ticks still refused for the changed image", refused(0, 2, changed_reason), serving, log,
                 START_BOUND_S + ROUND_BOUND_S)
        first_phase = len(ticks())
        images.rename(tmp_path / "images-renamed")  # a second fault: said in full again
        wait_for("two ticks still refused for the renamed pool", refused(first_phase, 2, pool_reason), serving,
                 log, ROUND_BOUND_S)
        with session_scope(engine) as session:  # the refused ticks started nothing
            assert [(r.index, r.status) for r in session.scalars(select(Round))] == [(1, RoundStatus.complete)]
        (tmp_path / "images-renamed" / uri).write_bytes(original)  # the pool's refusal is said first: unchanged
        (tmp_path / "images-renamed").rename(images)
        wait_for("round 2's summary", lambda: any(t.startswith("tick: round 2 complete") for t in ticks()),
                 serving, log, ROUND_BOUND_S)
        assert serving.poll() is None  # serve stayed up throughout
        os.killpg(serving.pid, signal.SIGINT)
        assert serving.wait(timeout=STOP_BOUND_S) == 0, log.read_text()[-3000:]
    finally:
        if serving.poll() is None:
            os.killpg(serving.pid, signal.SIGKILL)
            serving.wait()

    text = log.read_text()
    assert "Traceback" not in text and "DataSourceError" not in text and "DataChangedError" not in text, text[-3000:]
    said = ticks()
    full_changed = [t for t in said if t.startswith(f"tick: refused: {changed_reason}")]
    full_pool = [t for t in said if t.startswith(f"tick: refused: {pool_reason}")]
    assert len(full_changed) == 1 and len(full_pool) == 1, said  # each fault in full once
    assert full_pool[0] == (f"tick: refused: {pool_reason}; give a folder of images or a .csv/.jsonl manifest "
                            "(serve stays up and tries again at each tick: once this is fixed the next tick goes "
                            "on, no restart needed)"), full_pool
    start = said.index(full_changed[0])
    runs_line = f"tick: round 2 of campaign {name!r} runs"
    assert said[:start] == [runs_line], said  # the first refusal came from the round's own start
    end = len(said) - 1 - said[::-1].index(runs_line)
    phase = said[start:end]  # from the first refusal to the round that ran: refusals only
    assert set(phase) == {full_changed[0], full_pool[0], f"tick: still refused: {changed_reason}",
                          f"tick: still refused: {pool_reason}"}, phase
    assert said[end + 1].startswith("tick: round 2 complete"), said[end:]

    runs = _runs(name)
    ticks_runs = [r for r in runs if r.deployment_id is not None]  # not `run`'s own flow runs
    first_tick = min(r.expected_start_time for r in ticks_runs)
    subflows = [r for r in runs if r.parent_task_run_id is not None and r.expected_start_time >= first_tick]
    states = [(r.state_type.value, r.state_name) for r in ticks_runs]
    assert states.count(("FAILED", "Refused")) == 2, states  # one per fault: an alert fires once each
    assert states.count(("CANCELLED", "Still refused")) >= 4, states
    assert sum(1 for s in states if s[0] == "FAILED") == 2, states  # no other failed tick
    refused_messages = [r.state.message for r in ticks_runs if r.state_name == "Refused"]
    assert refused_messages[0].startswith(changed_reason) and refused_messages[1].startswith(pool_reason)
    # A round subflow only for the first refusal (later ticks check first) and for round 2.
    assert sorted((r.state_type.value for r in subflows)) == ["COMPLETED", "FAILED"], subflows

    with session_scope(engine) as session:  # round 2 ran once; nothing selected twice
        assert [(r.index, r.status) for r in session.scalars(select(Round).order_by(Round.index))] == [
            (1, RoundStatus.complete), (2, RoundStatus.complete)]
        assert session.scalar(select(func.count(Selection.id))) == 10
        assert session.scalar(select(func.count(func.distinct(Selection.sample_id)))) == 10
