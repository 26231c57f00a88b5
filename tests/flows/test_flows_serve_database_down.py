"""A serve whose PostgreSQL server goes away: each tick is refused, said once, and serve goes on.

A real `activelabel serve` (ticking every 2 s, the suite's shared Prefect server) of a campaign on
a private PostgreSQL cluster that the test stops and starts again. The campaign already has the
one round serve is asked for, so every tick that reaches the database says "nothing to do": no
round can race the outage, and the lines before, during and after it are known. While the server
is down: one full "refused: cannot reach database ..." line (password masked), then "still
refused" lines, serve up; once it is back, the next tick reads the campaign again. The password
is in no tick line and in no state message on the Prefect server.
"""

from __future__ import annotations

import os
import re
import signal

import pytest
from tests_support_serve import TICK_LINE, ROUND_BOUND_S, START_BOUND_S, STOP_BOUND_S
from tests_support_serve import start_serve
from tests_support_serve import wait_for

from activelabel.campaign import CampaignConfig, prepare_campaign
from activelabel.campaign.lookup import campaign_id
from activelabel.storage import Round, RoundStatus, open_engine, session_scope
from activelabel.storage.database import DATABASE_URL_ENV
from activelabel.storage.models import RoundKind

pytestmark = pytest.mark.postgres


def _flow_runs(name: str) -> list:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))


@pytest.mark.prefect_server
@pytest.mark.slow
def test_serve_says_a_lost_database_once_stays_up_and_reads_it_again_once_back(private_postgres, tmp_path,
                                                                                prefect_api_url):
    import uuid

    name = f"db-down-{uuid.uuid4().hex[:8]}"
    url = private_postgres.url
    engine = open_engine(url)
    prepare_campaign(engine, CampaignConfig(name=name, strategy="margin", rounds=1, batch_size=5, initial_labeled=0,
                                            mc_samples=2, epochs=1, device="cpu"))
    with session_scope(engine) as session:  # the round serve is asked for is done already
        session.add(Round(campaign_id=campaign_id(engine, name), index=1, strategy="random",
                          kind=RoundKind.cold_start, status=RoundStatus.complete, timings={}))
    engine.dispose()
    env = {**os.environ, "PREFECT_API_URL": prefect_api_url, DATABASE_URL_ENV: url,
           "PREFECT_HOME": str(tmp_path / "prefect-client")}
    log = tmp_path / "serve.log"
    nothing = f"tick: campaign '{name}' has its 1 rounds; nothing to do"

    def ticks() -> list[str]:
        return [line[9:] for line in log.read_text().splitlines() if re.match(TICK_LINE, line)]

    masked = f"cannot reach database postgresql+psycopg://crash_user:***@127.0.0.1:{private_postgres.port}/crash_db"
    serving = start_serve(name, env, log, "--interval", "2", "--rounds", "1")
    try:
        wait_for("a tick that read the campaign", lambda: nothing in ticks(), serving, log, START_BOUND_S + ROUND_BOUND_S)
        private_postgres.stop()
        down_from = len(ticks())
        wait_for("two ticks still refused", lambda: sum(t.startswith(f"tick: still refused: {masked}")
                                                       for t in ticks()[down_from:]) >= 2,
                 serving, log, ROUND_BOUND_S)
        private_postgres.start()
        up_from = len(ticks())
        wait_for("a tick that read the campaign again", lambda: nothing in ticks()[up_from:], serving, log,
                 ROUND_BOUND_S)
        os.killpg(serving.pid, signal.SIGINT)
        assert serving.wait(timeout=STOP_BOUND_S) == 0, log.read_text()[-3000:]
    finally:
        if serving.poll() is None:
            os.killpg(serving.pid, signal.SIGKILL)
            serving.wait()

    text = log.read_text()
    assert "crash-pw-123" not in text and "Traceback" not in text, text[-3000:]
    said = ticks()
    outage = [t for t in said[down_from:] if t != nothing]
    full = [t for t in outage if t.startswith(f"tick: refused: {masked}")]
    assert len(full) == 1 and outage.index(full[0]) == 0, outage  # said in full once, first
    assert full[0].endswith("(serve stays up and tries again at each tick: once this is fixed the next tick goes "
                            "on, no restart needed)"), full
    assert all(t.startswith(f"tick: still refused: {masked}") for t in outage[1:]), outage
    states = [(r.state_type.value, r.state_name, r.state.message or "") for r in _flow_runs(name) if r.state]
    assert sum(1 for s in states if s[:2] == ("FAILED", "Refused")) == 1, states
    assert sum(1 for s in states if s[:2] == ("CANCELLED", "Still refused")) >= 2, states
    assert not [s for s in states if "crash-pw-123" in s[2]], states
