"""The Alembic migrations build exactly the schema the models describe, on every backend."""

from __future__ import annotations

import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from activelabel.storage import Base, migrate, open_engine


def backends():
    yield pytest.param("sqlite", id="sqlite")
    yield pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)


@pytest.fixture(params=list(backends()))
def empty_engine(request, tmp_path):
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'migrate.db'}")
    else:
        url = os.environ.get("ACTIVELABEL_TEST_POSTGRES_URL")
        if not url:
            pytest.skip("ACTIVELABEL_TEST_POSTGRES_URL is not set (bash .ci/run starts a server)")
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS al_migrations CASCADE"))
            connection.execute(text("CREATE SCHEMA al_migrations"))
        engine = create_engine(url, connect_args={"options": "-csearch_path=al_migrations"})
    yield engine
    if request.param == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS al_migrations CASCADE"))
    engine.dispose()


def test_migrated_schema_equals_the_models(empty_engine):
    migrate.upgrade(empty_engine)
    assert migrate.current_revision(empty_engine) == migrate.head_revision()
    with empty_engine.connect() as connection:
        diff = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
    assert diff == []
    assert set(Base.metadata.tables) <= set(inspect(empty_engine).get_table_names())


def test_downgrade_to_base_removes_every_table(empty_engine):
    migrate.upgrade(empty_engine)
    migrate.upgrade_or_downgrade(empty_engine, "base")
    assert set(inspect(empty_engine).get_table_names()) - {"alembic_version"} == set()
    migrate.upgrade(empty_engine)
    assert set(Base.metadata.tables) <= set(inspect(empty_engine).get_table_names())


def test_open_engine_migrates_a_new_database_and_leaves_a_current_one_alone(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    engine = open_engine(url)
    assert migrate.current_revision(engine) == migrate.head_revision()
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO campaign (name, task_kind, labels, strategy, dataset, config, created_at) "
            "VALUES ('kept', 'classification', '[]', 'bald', 'digits', '{}', '2026-01-01')"
        ))
    again = open_engine(url)
    with again.connect() as connection:
        assert connection.execute(text("SELECT name FROM campaign")).scalars().all() == ["kept"]
