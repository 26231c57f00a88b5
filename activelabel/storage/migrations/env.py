"""Alembic environment: runs migrations on the connection activelabel hands it."""

from __future__ import annotations

from alembic import context

from activelabel.storage.models import Base

target_metadata = Base.metadata


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("activelabel runs migrations through activelabel.storage.migrate")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by table copy
        compare_type=True,
        # activelabel.storage.migrate runs all of it in one transaction, SQLite included.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
