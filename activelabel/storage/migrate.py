"""Schema migrations (Alembic), run by ``open_engine`` and ``activelabel db upgrade``.

The migration scripts ship inside the package, so no ``alembic.ini`` is needed.

Every schema change runs in ONE transaction, on SQLite as on PostgreSQL: a process killed
while it creates a new database leaves either no schema or the whole schema, never a
``campaign`` table without its ``alembic_version`` row. (pysqlite commits before each DDL
statement on its own; :func:`migration_connection` turns that off for the migration and
issues ``BEGIN IMMEDIATE`` itself, after SQLAlchemy's pysqlite documentation, "Serializable
isolation / Savepoints / Transactional DDL".)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, func, inspect, select

from activelabel.errors import DatabaseSchemaError

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection inside one transaction that DDL statements do not end.

    PostgreSQL: an ordinary transaction (its DDL is transactional). SQLite through pysqlite:
    the driver's own transaction handling is switched off for this connection (it would
    COMMIT before every CREATE TABLE) and ``BEGIN IMMEDIATE`` is issued instead, which also
    makes a second process that creates the same new database wait for the first (up to the
    busy timeout) instead of racing it. Committed on success, rolled back on any error.
    """
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        manual_sqlite = engine.dialect.name == "sqlite" and hasattr(raw, "isolation_level")
        saved = raw.isolation_level if manual_sqlite else None
        foreign_keys = None
        if manual_sqlite:
            connection.commit()  # nothing open before the driver's mode changes
            raw.isolation_level = None  # pysqlite: no implicit BEGIN/COMMIT around statements
            # Batch mode rebuilds a table (copy, DROP, rename): with foreign keys on, the DROP
            # would cascade-delete every child row. SQLite's own recipe for altering a table:
            # keys off outside the transaction, checked before commit, back on afterwards.
            foreign_keys = raw.execute("PRAGMA foreign_keys").fetchone()[0]
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                if manual_sqlite:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                yield connection
                if manual_sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise DatabaseSchemaError(
                            f"the migration would leave {len(broken)} rows pointing at missing rows "
                            f"(first: {tuple(broken[0])}); nothing was changed"
                        )
        finally:
            if manual_sqlite:
                if foreign_keys:
                    raw.execute("PRAGMA foreign_keys=ON")
                raw.isolation_level = saved


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` in one transaction (all migrations or none).

    A schema half made by an older version (activelabel tables but no ``alembic_version``
    row) is removed first when its tables are empty; when they hold rows,
    :class:`DatabaseSchemaError` says what to do and nothing is changed.
    """
    config = alembic_config(engine)
    with migration_connection(engine) as connection:
        repair_half_made_schema(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def upgrade_or_downgrade(engine: Engine, target: str) -> None:
    """Move the schema to ``target`` (a revision id, ``head`` or ``base``), either direction."""
    current = current_revision(engine)
    script = ScriptDirectory.from_config(alembic_config())
    ahead = target == "head" or current is None or (
        target != "base" and current in {r.revision for r in script.iterate_revisions(target, "base")}
    )
    config = alembic_config(engine)
    with migration_connection(engine) as connection:
        config.attributes["connection"] = connection
        if ahead:
            repair_half_made_schema(connection)
            command.upgrade(config, target)
        else:
            command.downgrade(config, target)


def repair_half_made_schema(connection: Connection) -> list[str]:
    """Drop activelabel tables left without a schema version, when all of them are empty.

    Such tables come from a first schema creation that was killed halfway by a version
    that did not create the schema in one transaction. Without a version Alembic would
    recreate them and fail with ``table campaign already exists`` forever. Returns the
    names of the tables dropped (none when the database has a version or no such table).

    Raises DatabaseSchemaError naming the tables and their row counts when any holds rows:
    they may be someone's data, so nothing is dropped.
    """
    from activelabel.storage.models import Base

    if MigrationContext.configure(connection).get_current_revision() is not None:
        return []
    present = set(inspect(connection).get_table_names())
    ours = [table for table in reversed(Base.metadata.sorted_tables) if table.name in present]
    if not ours:
        return []
    counts = {t.name: connection.execute(select(func.count()).select_from(t)).scalar_one() for t in ours}
    filled = {name: n for name, n in counts.items() if n}
    if filled:
        from activelabel.storage.database import describe_url

        where = describe_url(connection.engine.url.render_as_string(hide_password=False))
        rows = ", ".join(f"{name}: {n} rows" for name, n in sorted(filled.items()))
        raise DatabaseSchemaError(
            f"database {where} has activelabel tables with data ({rows}) but no schema version "
            "(table alembic_version is missing or empty), so activelabel cannot tell which version "
            "made them; back it up, then move it aside (SQLite: rename the file) or drop these "
            "tables, and rerun to create a new schema"
        )
    for table in ours:  # children before parents (reverse dependency order)
        table.drop(connection)
    return [t.name for t in ours]


def revision(engine: Engine, message: str) -> None:
    """Developer helper: autogenerate a new migration from the models against ``engine``."""
    config = alembic_config(engine)
    with migration_connection(engine) as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)
