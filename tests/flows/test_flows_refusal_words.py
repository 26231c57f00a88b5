"""What a refused serve tick says and which state its run ends in (activelabel.flows.refusal), on
real error objects; the serve that shows it end to end is test_flows_serve_refusals.py."""

from __future__ import annotations

from activelabel.campaign.integrity import DataChangedError
from activelabel.errors import (
    ConfigError, DatabaseUnavailableError, RoundAlreadyRunningError, ServiceUnavailableError,
)
from activelabel.flows import refusal
from activelabel.pipeline.sources import DataSourceError

POOL = ("data.pool: folder or manifest /data/scans does not exist; give a folder of images or a "
        ".csv/.jsonl manifest")


def test_data_and_settings_refusals_count_waits_and_busy_rounds_do_not():
    for error in (DataSourceError(POOL), DataChangedError("1 labeled image(s) changed"),
                  ConfigError("data.pool holds 3 images"), DatabaseUnavailableError("database unreachable")):
        assert refusal.is_refusal(error), error
    for error in (ServiceUnavailableError("Label Studio is down"), RoundAlreadyRunningError("busy"),
                  KeyboardInterrupt(), RuntimeError("a bug")):
        assert not refusal.is_refusal(error), error


def test_the_first_refusal_is_said_in_full_and_fails_the_same_one_again_is_short_and_cancelled():
    first = refusal.refused_line(POOL, None)
    assert first == (f"refused: {POOL} (serve stays up and tries again at each tick: once this is fixed the "
                     "next tick goes on, no restart needed)")
    state = refusal.refused_state(POOL, None)
    assert (state.type.value, state.name, state.message) == ("FAILED", "Refused", POOL)

    assert refusal.refused_line(POOL, POOL) == "still refused: data.pool: folder or manifest /data/scans does not exist"
    state = refusal.refused_state(POOL, POOL)
    assert (state.type.value, state.name, state.message) == ("CANCELLED", "Still refused", POOL)

    other = "annotator.truth: manifest /data/truth.csv does not exist; check the path in the campaign file"
    assert refusal.refused_line(other, POOL).startswith(f"refused: {other} (serve stays up")  # a new fault: in full
    assert refusal.refused_state(other, POOL).name == "Refused"


def test_outside_a_served_deployment_there_is_no_previous_tick():
    assert refusal.previous_refusal() is None  # no flow run, no deployment: the tick just runs
