"""The Alembic migrations build exactly the schema the models describe, on every backend."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

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


# --- A first schema creation that cannot be left half made (issue 13, section 5) ---------

OUR_TABLES = set(Base.metadata.tables)


def _version_rows(engine) -> list[str]:
    with engine.connect() as connection:
        if "alembic_version" not in inspect(connection).get_table_names():
            return []
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()


def test_a_migration_failing_halfway_leaves_no_table_behind(empty_engine):
    # A real failure in the middle of the migration: a view already holds the name of the
    # last table it creates, so CREATE TABLE selection fails after seven tables were created.
    with empty_engine.begin() as connection:
        connection.execute(text("CREATE VIEW selection AS SELECT 1 AS x"))
    with pytest.raises(Exception, match="(?i)already exists"):
        migrate.upgrade(empty_engine)
    # One transaction: none of the tables created before the failure is left behind.
    assert set(inspect(empty_engine).get_table_names()) & OUR_TABLES == set()
    assert _version_rows(empty_engine) == []
    with empty_engine.begin() as connection:
        connection.execute(text("DROP VIEW selection"))
    migrate.upgrade(empty_engine)  # and the next try builds the whole schema
    assert OUR_TABLES <= set(inspect(empty_engine).get_table_names())
    assert _version_rows(empty_engine) == [migrate.head_revision()]


KILLED_MIDWAY = """
import os, signal, sys
from sqlalchemy import create_engine, event
from activelabel.storage import migrate

engine = create_engine(sys.argv[1])
created = []

@event.listens_for(engine, "after_cursor_execute")
def _kill_after_the_second_table(conn, cursor, statement, *args):
    if statement.lstrip().upper().startswith("CREATE TABLE"):
        created.append(statement)
        if len(created) == 2:
            os.kill(os.getpid(), signal.SIGKILL)

migrate.upgrade(engine)
"""


def test_sigkill_during_the_first_schema_creation_leaves_an_empty_database(tmp_path):
    """The field failure itself: the process dies (SIGKILL) after two CREATE TABLEs."""
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    killed = subprocess.run([sys.executable, "-c", KILLED_MIDWAY, url], capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    engine = create_engine(url)
    assert set(inspect(engine).get_table_names()) & OUR_TABLES == set()
    assert _version_rows(engine) == []
    engine.dispose()
    reopened = open_engine(url)  # the next command just creates the schema
    assert migrate.current_revision(reopened) == migrate.head_revision()
    assert OUR_TABLES <= set(inspect(reopened).get_table_names())


HALF_MADE = (
    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);"
    "CREATE TABLE campaign (id INTEGER PRIMARY KEY, name VARCHAR(200) NOT NULL);"
)


def _sqlite3(path, script: str) -> None:
    """The sqlite3 shell, as a user (or an older version killed midway) would leave the file."""
    subprocess.run(["sqlite3", str(path)], input=script, text=True, check=True, timeout=60)


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="needs the sqlite3 shell")
def test_a_half_made_empty_schema_is_repaired_on_open(tmp_path):
    path = tmp_path / "half.db"
    _sqlite3(path, HALF_MADE)  # what a killed first run of an older version left
    engine = open_engine(f"sqlite:///{path}")
    assert migrate.current_revision(engine) == migrate.head_revision()
    columns = {c["name"] for c in inspect(engine).get_columns("campaign")}
    assert {"task_kind", "labels", "strategy", "dataset", "config", "created_at"} <= columns
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO campaign (name, task_kind, labels, strategy, dataset, config, created_at) "
            "VALUES ('first', 'classification', '[]', 'bald', 'digits', '{}', '2026-01-01')"
        ))
        assert connection.execute(text("SELECT name FROM campaign")).scalars().all() == ["first"]


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="needs the sqlite3 shell")
def test_a_half_made_schema_holding_rows_is_refused_on_one_line_and_left_as_it_was(tmp_path):
    path = tmp_path / "half.db"
    _sqlite3(path, HALF_MADE + "INSERT INTO campaign (name) VALUES ('precious');")
    for args in (["db", "upgrade"], ["status"]):
        result = subprocess.run(
            [sys.executable, "-m", "activelabel.cli", *args, "--database-url", f"sqlite:///{path}"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
        )
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("error: database sqlite:///")
        assert "campaign: 1 rows" in lines[0] and "no schema version" in lines[0]
        assert "move it aside" in lines[0]
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:  # nothing was dropped or created
        assert connection.execute(text("SELECT name FROM campaign")).scalars().all() == ["precious"]
        assert set(inspect(connection).get_table_names()) == {"alembic_version", "campaign"}
    engine.dispose()


def test_missing_postgres_driver_names_the_extra_to_install(tmp_path):
    # Simulates an install without the `postgres` extra: psycopg cannot be imported.
    script = (
        "import sys; sys.modules['psycopg'] = None; sys.modules['psycopg2'] = None\n"
        "from activelabel.cli import main\n"
        "sys.argv = ['activelabel', 'db', 'current', '--database-url',"
        " 'postgresql+psycopg://al:s3cret-pw@127.0.0.1:5432/labels']\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "pip install 'activelabel[postgres]'" in lines[0]
    assert "postgresql+psycopg://al:***@127.0.0.1:5432/labels" in lines[0]
    assert "s3cret-pw" not in result.stderr
