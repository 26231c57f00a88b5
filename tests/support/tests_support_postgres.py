"""A throwaway PostgreSQL schema per test, so bulk tests never touch other tests' tables."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_URL_ENV = "ACTIVELABEL_TEST_POSTGRES_URL"


@contextmanager
def throwaway_schema_url(prefix: str) -> Iterator[str]:
    """The test server's URL with ``search_path`` on a fresh schema ``<prefix>_<random>``,
    dropped (with everything in it) afterwards. Skips the test without a server."""
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(f"needs a PostgreSQL server: set {POSTGRES_URL_ENV}")
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def sqlite_or_postgres_engine(backend: str, sqlite_path, prefix: str):
    """An engine on a fresh SQLite file ``sqlite_path`` (``backend == "sqlite"``) or on a
    throwaway PostgreSQL schema ``<prefix>_<random>`` (skips without a server); disposed after.
    The body of the two-backend fixtures campaign tests parametrize over."""
    from activelabel.storage import open_engine

    if backend == "sqlite":
        engine = open_engine(f"sqlite:///{sqlite_path}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    with throwaway_schema_url(prefix) as url:
        engine = open_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()
