"""Typed errors a user can catch by name.

Every message names the thing that is wrong and, where there is one, what to do about it.
The CLI prints ``str(error)`` on one line and exits non-zero, so messages stay single-line.
"""

from __future__ import annotations


class ActiveLabelError(Exception):
    """Base class for every error activelabel raises on purpose."""


class UnknownStrategyError(ActiveLabelError, KeyError):
    """An acquisition strategy name that is not in the registry."""

    def __init__(self, name: str, available: list[str]) -> None:
        self.name = name
        self.available = available
        super().__init__(name)

    def __str__(self) -> str:
        return f"unknown strategy {self.name!r}; choose one of: {', '.join(self.available)}"


class InvalidProbabilitiesError(ActiveLabelError, ValueError):
    """A probability tensor with the wrong shape, NaNs, negative values or rows not summing to 1."""


class SelectionSizeError(ActiveLabelError, ValueError):
    """Asked to select more samples than the pool holds (or a non-positive number)."""


class ConfigError(ActiveLabelError, ValueError):
    """A campaign setting that cannot work (sizes, names, paths)."""


class ServiceUnavailableError(ActiveLabelError):
    """An outside service (e.g. the annotation server) is down: the round waits in its step."""


class DatabaseUnavailableError(ActiveLabelError):
    """The database URL is malformed or the server cannot be reached. Never carries the password."""


class CampaignStateError(ActiveLabelError):
    """The stored campaign cannot do what was asked (e.g. conflicting settings, round already running)."""


class SettingsChangedError(CampaignStateError):
    """A rerun's fixed settings differ from the stored campaign's. ``changes`` holds
    (setting, stored value, new value) so a caller that knows where the values came from (a
    campaign file) can say what to put back where (trial 14 F6)."""

    def __init__(self, message: str, changes: list[tuple[str, object, object]] | None = None,
                 why: str = "") -> None:
        super().__init__(message)  # args = (message,): unpickled (a flow's state) without changes
        self.changes = list(changes or [])
        self.why = why  # why a setting that may change at other times is fixed now ("" when none)


class RoundAlreadyRunningError(CampaignStateError):
    """Another live process holds the campaign's lease: one round per campaign at a time."""


class DatasetError(ActiveLabelError):
    """A dataset that cannot be read: missing files, corrupt images, unknown labels."""


class WeightsFileError(ActiveLabelError):
    """A weights or model file that cannot be used: missing, unreadable, or not matching the
    architecture. The message names the file, the architecture and the first offending keys."""

class DatabaseSchemaError(ActiveLabelError):
    """The database's schema is in a state activelabel will not change on its own (e.g. tables
    holding rows but no schema version); the message says what to do."""


class PrefectApiUnavailableError(ActiveLabelError):
    """Prefect's API (its temporary local server, or the one at PREFECT_API_URL) did not answer."""


class InvalidArrayError(ActiveLabelError, ValueError):
    """A feature, logit or label array with the wrong shape, non-finite values or labels out of range."""


class DatabaseLocationError(ActiveLabelError):
    """A campaign (or experiment) named by its file is missing from the file's default database
    (``activelabel.db`` next to the file) but present in ``activelabel.db`` of the current
    folder, where older versions kept it; the message names both files and what to do."""


class WorkerDatabaseError(ActiveLabelError):
    """A scoring worker (e.g. a Dask worker) could not read the round from *its* database: no URL
    configured there, another database, no password. The campaign's own database is fine; the
    message names the worker, the (password-masked) URL it used, and the environment to set."""
