"""Schema migrations (Alembic), run by ``open_engine`` and ``activelabel db upgrade``.

The migration scripts ship inside the package, so no ``alembic.ini`` is needed.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

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


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` in one transaction per migration."""
    config = alembic_config(engine)
    with engine.begin() as connection:
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
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        if ahead:
            command.upgrade(config, target)
        else:
            command.downgrade(config, target)


def revision(engine: Engine, message: str) -> None:
    """Developer helper: autogenerate a new migration from the models against ``engine``."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=True)
