"""The HTML report in a real headless Chromium: no console error, every image decoded with a size.

Chromium is driven over the DevTools protocol (a websocket; the `websockets` client comes with
Prefect). Without a `chromium` binary the test skips, except in CI (CI=true), where
`.ci/run` installs it and a missing browser is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest
from report_tiny import run_cli

BROWSER_START_BOUND_S = 120  # a loaded 2-core machine
PAGE_LOAD_BOUND_S = 120


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("chromium is not installed; .ci/run installs it (apt-get install -y chromium)")
    pytest.skip("chromium is not installed (apt-get install -y chromium); CI=true makes this a failure")


class DevTools:
    """A minimal DevTools protocol client over one page's websocket."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self._ws = connect(url, max_size=None, open_timeout=30)
        self._next = 0
        self.events: list[dict] = []

    def call(self, method: str, timeout: float = 60.0, **params) -> dict:
        self._next += 1
        ident = self._next
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == ident:
                assert "error" not in message, message
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while time.monotonic() < deadline:
            message = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            self.events.append(message)
            if message.get("method") == method:
                return message
        raise TimeoutError(f"no {method} within {timeout} s")

    def close(self) -> None:
        self._ws.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for the module's reports (each test navigates its own page and
    `_load` clears the events first, so no test sees another's errors); a start per report cost
    several seconds each on a busy machine."""
    exe = _chromium()
    tmp_path = tmp_path_factory.mktemp("chromium")
    process = subprocess.Popen(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-port=0",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "about:blank"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    try:
        port = None
        deadline = time.monotonic() + BROWSER_START_BOUND_S
        while port is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line and process.poll() is not None:
                pytest.fail(f"chromium exited with {process.returncode} before listening")
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if found:
                port = int(found.group(1))
        assert port is not None, f"chromium did not open its DevTools port within {BROWSER_START_BOUND_S} s"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as response:
            pages = [t for t in json.load(response) if t["type"] == "page"]
        client = DevTools(pages[0]["webSocketDebuggerUrl"])
        yield client
        client.close()
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)


def _load(browser: DevTools, path) -> list[dict]:
    """Open the file; return its images' natural sizes. Console and page errors stay in events."""
    for domain in ("Page", "Runtime", "Log"):
        browser.call(f"{domain}.enable")
    browser.events.clear()
    browser.call("Page.navigate", url=path.resolve().as_uri())
    browser.wait_for("Page.loadEventFired", PAGE_LOAD_BOUND_S)
    result = browser.call(
        "Runtime.evaluate", returnByValue=True,
        expression="Array.from(document.images).map(i => ({w: i.naturalWidth, h: i.naturalHeight, "
                   "shown: i.getBoundingClientRect().width, complete: i.complete, "
                   "figure: i.closest('figure[data-figure]')?.dataset.figure ?? null}))",
    )
    return result["result"]["value"]


def _errors(events: list[dict]) -> list[dict]:
    bad = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            bad.append(params)
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            bad.append(params)
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            bad.append(params)
    return bad


LEARNING = {"learning-curve-accuracy", "learning-curve-nll", "learning-curve-ece", "class-balance", "timings"}


# (database fixture, report name, the conftest fixture that already rendered that report or None,
# figures). campaign_report and degraded_report ran `activelabel report NAME --out ... --database-url
# DB` and nothing else; experiment_report adds three --target values, which change numbers in the
# labels-to-target table, not which figures and tables the page holds.
@pytest.mark.parametrize(("database", "report_name", "rendered", "figures"), [
    ("tiny_experiment", "tiny", "experiment_report", LEARNING | {"calibration-curves", "decomposition-comparison"}),
    ("calibrated_experiment", "tiny-random-seed1", "campaign_report", LEARNING | {  # round 2: a fitted temperature
        "calibration-curves", "reliability-round-2", "decomposition-round-1", "decomposition-round-2",
        # no density histograms: ~50 labels per class, not more than the 128 features (not measured yet)
        "uncertainty-round-1", "uncertainty-round-2"}),
    # an evaluation round, a cold-start round, a temperature without a test split (see conftest)
    ("degraded_campaign", "tiny-entropy-seed0", "degraded_report", LEARNING | {
        "calibration-curves", "decomposition-round-2", "uncertainty-round-2"}),
    ("segmentation_campaign", "demo-seg-bald-seed0", None, {  # 2 rounds of 6 picks: every heatmap embedded
        "learning-curve-miou", "learning-curve-pixel-accuracy", "learning-curve-pixel-ece", "uncertainty-round-1",
        "uncertainty-round-2", "decomposition-round-1", "decomposition-round-2", "pixel-balance", "timings",
        *[f"heatmap-round-{r}-rank-{k}" for r in (1, 2) for k in range(1, 7)]}),
], ids=["experiment", "campaign", "campaign-with-uncalibrated-rounds", "segmentation-campaign"])
def test_the_report_renders_in_chromium_without_errors(browser, request, database, report_name, rendered, figures):
    exp = request.getfixturevalue(database)
    if rendered:  # the session's own rendering of this report (one `activelabel report` run less)
        out = request.getfixturevalue(rendered)[0]
        assert out.is_file()
    else:
        out = exp.database.parent / f"browser-{report_name}.html"
        result = run_cli("report", report_name, "--out", str(out), "--database-url", exp.url, cwd=exp.folder)
        assert result.returncode == 0, result.stderr
    images = _load(browser, out)
    assert {i["figure"] for i in images if i["figure"]} == figures  # these, and no empty placeholder
    for image in images:
        assert image["complete"] and image["w"] > 0 and image["h"] > 0 and image["shown"] > 0, image
    assert _errors(browser.events) == []
