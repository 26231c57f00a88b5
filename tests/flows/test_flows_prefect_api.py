"""The start-up bound of Prefect's temporary API server (activelabel.flows.prefect_api).

The server's start, its one-line error and its end with the CLI are tested through the real
CLI in tests/flows/test_flows_crash.py; here: which bound applies.
"""

from __future__ import annotations

import os

from activelabel.flows import prefect_api


def test_the_users_bound_wins(monkeypatch):
    monkeypatch.setenv(prefect_api.STARTUP_TIMEOUT_ENV, "45")
    assert prefect_api.startup_timeout() == 45.0


def test_without_a_users_bound_the_default_follows_the_load_per_core(monkeypatch):
    monkeypatch.delenv(prefect_api.STARTUP_TIMEOUT_ENV, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    for load, expected in ((0.3, 120.0), (2.0, 120.0), (4.0, 240.0), (10.0, 600.0), (40.0, 600.0)):
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        assert prefect_api.startup_timeout() == expected, load
    monkeypatch.setenv(prefect_api.STARTUP_TIMEOUT_ENV, "not-a-number")
    assert prefect_api.startup_timeout() == 600.0  # unusable value: the default


def test_no_temporary_server_is_prepared_when_an_api_is_configured():
    # The suite runs against its shared server (tests/conftest.py): install() leaves Prefect's
    # temporary server as it is.
    assert os.environ.get("PREFECT_API_URL")
    prefect_api.install()
    from prefect.server.api.server import SubprocessASGIServer

    assert not getattr(SubprocessASGIServer._instances.get(None), "bound_to_activelabel", False)
