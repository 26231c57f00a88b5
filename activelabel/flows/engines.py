"""One engine per database URL per process: tasks take URLs, not connections."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine

from activelabel.errors import ConfigError
from activelabel.storage.database import has_password, open_engine, resolve_database_url


def engine_for(database_url: str | None) -> Engine:
    """The engine for a flow's ``database_url`` parameter (None: from the environment).

    Prefect stores and shows flow parameters, so a URL carrying a password is refused here:
    put the URL in ``$ACTIVELABEL_DATABASE_URL`` or the password in
    ``$ACTIVELABEL_DATABASE_PASSWORD`` instead.
    """
    if database_url is not None and has_password(database_url):
        raise ConfigError(
            "a database URL with a password cannot be a flow parameter (Prefect stores "
            "parameters); set ACTIVELABEL_DATABASE_URL or ACTIVELABEL_DATABASE_PASSWORD instead"
        )
    return _engine(resolve_database_url(database_url))


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    return open_engine(url)
