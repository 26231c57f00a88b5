"""`serve`'s own arguments and its Prefect server, checked before anything heavy is imported.

A plain module (no Prefect, no torch): the CLI answers a wrong ``--interval`` / ``--cron`` or a
missing or unreachable Prefect server in about a second, instead of after the ~10 s it takes to
import the flow stack. :func:`activelabel.flows.schedule.serve_campaign` runs the same checks for
callers that do not come through the CLI.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Mapping

from activelabel.errors import ConfigError

PREFECT_API_ENV = "PREFECT_API_URL"
#: Seconds to wait for the Prefect server's /health before calling it unreachable.
HEALTH_TIMEOUT_S = 10.0


def check_schedule_options(interval: float | None, cron: str | None) -> None:
    """Exactly one of ``interval`` (seconds, > 0) and ``cron`` (non-empty).

    Raises:
        ConfigError: both or neither given, or a non-positive interval.
    """
    if (interval is None) == (cron is None):
        raise ConfigError("give exactly one of --interval SECONDS or --cron 'EXPRESSION'")
    if interval is not None and interval <= 0:
        raise ConfigError(f"--interval must be a positive number of seconds, got {interval}")
    if cron is not None and not cron.strip():
        raise ConfigError("--cron is empty; give a cron expression, e.g. '0 3 * * *' (3 am daily)")


def check_cron(cron: str) -> None:
    """A cron expression Prefect's schedules accept (Prefect's own validator, imported here only:
    it costs Prefect's client, about a second, and neither torch nor the flows).

    Raises:
        ConfigError: not a cron expression, or one of croniter's random/hashed forms.
    """
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except ValueError as error:
        errors = error.errors() if hasattr(error, "errors") else []  # pydantic's ValidationError
        reason = str(errors[0].get("msg", error)).removeprefix("Value error, ") if errors else str(error)
        raise ConfigError(f"--cron {cron!r} is not a cron expression ({reason}); "
                          "e.g. '0 3 * * *' for 3 am daily") from None


def prefect_api_url(environ: Mapping[str, str] | None = None) -> str:
    """``$PREFECT_API_URL``, which a schedule needs (Prefect's temporary server ends with the
    process, and its schedule with it).

    Raises:
        ConfigError: the variable is not set.
    """
    url = (os.environ if environ is None else environ).get(PREFECT_API_ENV, "").strip()
    if not url:
        raise ConfigError(
            "schedules need a Prefect server: run `prefect server start` and export "
            "PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    return url.rstrip("/")


def check_prefect_server(url: str, timeout_s: float = HEALTH_TIMEOUT_S) -> None:
    """Reach ``url``/health. Any HTTP answer counts as reachable (a server that wants a key
    still exists); only a failed connection is an error, as a tick would fail on it.

    Raises:
        ConfigError: nothing answers at ``url`` within ``timeout_s`` seconds.
    """
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise ConfigError(
            f"cannot reach the Prefect server at PREFECT_API_URL={url} ({reason}); start it with "
            "`prefect server start` or export the URL of a running one"
        ) from None
