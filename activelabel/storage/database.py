"""Engines from URLs, with errors that name the database and never the password."""

from __future__ import annotations

import gc
import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from activelabel.errors import DatabaseUnavailableError

# Without a campaign file: activelabel.db in the current folder. A campaign (or experiment) file's
# default is activelabel.db next to the file: see activelabel.storage.location.
DEFAULT_DATABASE_URL = "sqlite:///activelabel.db"
DATABASE_URL_ENV = "ACTIVELABEL_DATABASE_URL"
DATABASE_PASSWORD_ENV = "ACTIVELABEL_DATABASE_PASSWORD"


def resolve_database_url(url: str | None = None) -> str:
    """The URL to use: the one given, else ``$ACTIVELABEL_DATABASE_URL``, else the SQLite default.

    A password can stay out of the URL (and so out of flow parameters, logs and shell history):
    ``$ACTIVELABEL_DATABASE_PASSWORD`` is filled in when the URL has none.
    """
    chosen = url or os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL
    password = os.environ.get(DATABASE_PASSWORD_ENV)
    if not password:
        return chosen
    try:
        parsed = make_url(chosen)
    except (ArgumentError, ValueError):
        return chosen
    if parsed.password or parsed.get_backend_name() == "sqlite":
        return chosen
    return parsed.set(password=password).render_as_string(hide_password=False)


def has_password(url: str) -> bool:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return False
    return parsed.password is not None or "password" in parsed.query


def describe_url(url: str) -> str:
    """The URL as it is safe to show: host, port and database, password masked."""
    try:
        parsed = make_url(url)
        if "password" in parsed.query:  # psycopg also takes ?password=...
            parsed = parsed.update_query_dict({"password": "***"})
        return parsed.render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Unparseable: show only the scheme so a password in a malformed URL never leaks.
        return url.split(":", 1)[0] + ":…" if ":" in url else "<unparseable URL>"


MASK = "***"


def without_password(url: str) -> str:
    """The URL with its password (in the user part or a ``?password=`` query) left out, so it
    can go into a suggested command or Prefect's stored parameters and still connect once
    ``$ACTIVELABEL_DATABASE_PASSWORD`` fills the password in (:func:`resolve_database_url`).
    An unparseable URL comes back as :func:`describe_url` shows it."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return describe_url(url)
    if "password" in parsed.query:
        parsed = parsed.difference_update_query(["password"])
    # URL.set(password=None) keeps the password (None there means "unchanged").
    return URL.create(parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database,
                      parsed.query).render_as_string(hide_password=False)


def refuse_masked_password(url: str) -> None:
    """Refuse a URL whose password is literally ``***``: it was copied from a message where
    activelabel masked the password, and used as is it fails like a wrong password."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return
    if MASK in (parsed.password, parsed.query.get("password")):
        raise DatabaseUnavailableError(
            f"database URL {describe_url(url)} has the password {MASK}: it is a masked URL as activelabel "
            "prints it, not the real password; leave the password out of the URL and give it in "
            f"${DATABASE_PASSWORD_ENV} (or put the real one in the URL)"
        )


def _first_line(exc: BaseException) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return message[0] if message else type(exc).__name__


def _missing_driver(shown: str, url: str, exc: ImportError) -> str:
    """What to install when the URL is fine but its database driver is not importable."""
    try:
        parsed = make_url(url)
        backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    except (ArgumentError, ValueError):
        backend = driver = ""
    if backend == "postgresql":
        other = "" if driver == "psycopg" else " and use a postgresql+psycopg:// URL"
        return (
            f"database {shown} is PostgreSQL, but its driver is not installed ({_first_line(exc)}); "
            f"install activelabel's postgres extra: pip install 'activelabel[postgres]'{other}"
        )
    return f"the driver for database {shown} is not installed: {_first_line(exc)}"


def _enable_sqlite_foreign_keys(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def open_engine(url: str = DEFAULT_DATABASE_URL, *, create_schema: bool = True) -> Engine:
    """Connect, check the server answers, and create the schema on first use.

    Raises DatabaseUnavailableError naming the (password-masked) URL when the URL is malformed,
    the driver is missing, or the server cannot be reached — before anything is written.
    """
    shown = describe_url(url)
    refuse_masked_password(url)
    try:
        # pre-ping: a server restarted mid-campaign leaves dead pooled connections behind.
        engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    except ImportError as exc:
        raise DatabaseUnavailableError(_missing_driver(shown, url, exc)) from None
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise DatabaseUnavailableError(f"invalid database URL {shown}: {_first_line(exc)}") from None
    if engine.dialect.name == "sqlite":
        _enable_sqlite_foreign_keys(engine)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        engine.dispose()
        raise DatabaseUnavailableError(
            f"cannot reach database {shown}: {describe_error(exc, engine)}"
        ) from None
    if create_schema:
        try:
            ensure_schema(engine)
        except SQLAlchemyError as exc:
            engine.dispose()
            raise DatabaseUnavailableError(
                f"cannot bring the schema of database {shown} up to date: "
                f"{describe_error(exc, engine)}"
            ) from None
    return engine


def ensure_schema(engine: Engine) -> None:
    """Migrate the schema to the newest revision (creating it on first use).

    Two processes may race to create a fresh database; the loser finds the schema current.
    """
    from activelabel.storage import migrate

    head = migrate.head_revision()
    if migrate.current_revision(engine) == head:
        return
    try:
        migrate.upgrade(engine)
    except SQLAlchemyError:
        if migrate.current_revision(engine) != head:
            raise


def describe_error(exc: BaseException, engine: Engine) -> str:
    """The first line of a database error, with the engine's password masked out."""
    return _mask(_first_line(exc), engine)


def _mask(message: str, engine: Engine) -> str:
    for secret in (engine.url.password, engine.url.query.get("password")):
        if secret:
            message = message.replace(str(secret), "***")
    return message


def release_reads_cut_by(error: BaseException | None) -> None:
    """Let go of the database reads an exception cut mid-way, before writing after it.

    A stop (Ctrl-C, SIGTERM) lands at any bytecode, also while a query's rows are being read.
    The cut read's result stays referenced by its frame, which the exception's traceback keeps
    alive, and on SQLite an unfinished read holds its SHARED lock for as long as its cursor
    lives: Python 3.11's ``sqlite3`` no longer resets statements on commit or rollback, so
    returning the connection to the pool does not release it. Every write of the process then
    waits out the busy timeout and fails with "database is locked" (a round stopped mid-step
    was left ``training`` instead of marked stopped, in CI). Clearing the locals of the frames
    the exception has left (those still executing are skipped) drops those results, and their
    cursors with them. The traceback's lines stay; only locals go. Also for the exceptions it
    was raised while handling."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__context__ or error.__cause__
    gc.collect()  # a result caught in a reference cycle


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    factory = sessionmaker(engine, expire_on_commit=False)
    with factory() as session, session.begin():
        yield session
