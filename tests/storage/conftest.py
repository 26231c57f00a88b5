"""Storage fixtures: an engine per backend (SQLite always, PostgreSQL when configured).

PostgreSQL runs only when ``ACTIVELABEL_TEST_POSTGRES_URL`` names a server, e.g.
``postgresql+psycopg://user:pw@127.0.0.1:5432/activelabel_test``; every test starts from an
empty database there (every table dropped, the migration bookkeeping included, then
``open_engine`` builds the schema again), so the database must be one tests may wipe.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, MetaData

from activelabel.storage import Campaign, Round, open_engine, session_scope

POSTGRES_URL_ENV = "ACTIVELABEL_TEST_POSTGRES_URL"


def wipe_all_tables(eng: Engine) -> None:
    """Drop every table in the database (not only the models' tables), then dispose."""
    meta = MetaData()
    meta.reflect(bind=eng)
    meta.drop_all(bind=eng)
    eng.dispose()


@pytest.fixture
def wipe_database() -> Callable[[Engine], None]:
    """``wipe_all_tables`` for tests that need to start from an empty database."""
    return wipe_all_tables


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = open_engine(f"sqlite:///{tmp_path / 'storage.db'}")
    else:
        url = os.environ.get(POSTGRES_URL_ENV)
        if not url:
            pytest.skip(f"{POSTGRES_URL_ENV} is not set")
        wipe_all_tables(open_engine(url, create_schema=False))
        # A fresh schema for every test, built the way the application builds it.
        eng = open_engine(url)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def make_campaign(engine: Engine) -> Callable[..., int]:
    """Insert a campaign row and return its id."""

    def make(name: str = "demo", labels: list[str] | None = None) -> int:
        with session_scope(engine) as session:
            campaign = Campaign(
                name=name,
                labels=labels or ["cat", "dog"],
                strategy="bald",
                dataset="digits",
                config={"batch": 10},
            )
            session.add(campaign)
            session.flush()
            return campaign.id

    return make


@pytest.fixture
def make_round(engine: Engine) -> Callable[..., int]:
    """Insert a round row (status ``training`` by default) and return its id."""

    def make(campaign_id: int, index: int = 0, **values) -> int:
        with session_scope(engine) as session:
            row = Round(campaign_id=campaign_id, index=index, strategy="bald", **values)
            session.add(row)
            session.flush()
            return row.id

    return make
