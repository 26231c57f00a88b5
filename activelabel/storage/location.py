"""Where a campaign's SQLite database lives when nobody said where.

A campaign file (or an experiment file) is the campaign's home: its relative paths are read
from the file's folder, so a campaign folder can be moved or shared whole. The default
database follows the same rule — ``activelabel.db`` next to the file — so the same file run
from another folder continues the same campaign instead of silently starting a second one in
whatever folder the shell is in. Runs without a file (``activelabel demo``, ``run --dataset``)
keep ``activelabel.db`` in the current folder.

Older versions put a campaign file's database in the current folder too. A campaign left
there is found, never duplicated: :func:`refuse_old_default` stops with both paths and what
to do. Only SQLite URLs are rewritten here; any other URL passes through as the same string,
so a password in it is never parsed out, re-rendered or shown.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from activelabel.errors import DatabaseLocationError

DEFAULT_DATABASE_FILE = "activelabel.db"


def default_database_url(folder: str | Path) -> str:
    """``sqlite:///<absolute folder>/activelabel.db``: the default database of a campaign (or
    experiment) file in ``folder``."""
    return f"sqlite:///{Path(folder).expanduser().resolve() / DEFAULT_DATABASE_FILE}"


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names, as written (maybe relative); None for another backend, an
    in-memory database (``sqlite://``, ``:memory:``), a ``file:`` URI or an unparseable URL."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def anchor_sqlite_url(url: str, folder: str | Path) -> str:
    """``url`` with a relative SQLite file path made absolute against ``folder`` (``~`` is
    expanded, as in a campaign file's other paths). Absolute SQLite paths, in-memory SQLite
    and every other URL come back as the same string (nothing parsed out or re-rendered).

    >>> anchor_sqlite_url("sqlite:///labels.db", "/campaigns/cats")
    'sqlite:////campaigns/cats/labels.db'
    """
    path = sqlite_file(url)
    if path is None:
        return url
    expanded = path.expanduser()
    if expanded == path and path.is_absolute():
        return url
    absolute = expanded if expanded.is_absolute() else Path(folder).expanduser().resolve() / expanded
    return make_url(url).set(database=str(absolute.resolve())).render_as_string(hide_password=False)


def holds(path: Path, table: str, name: str) -> bool:
    """Whether the SQLite file at ``path`` has a row named ``name`` in ``table`` ("campaign" or
    "experiment"). Opened read-only: a missing file, another kind of file or an older schema
    without the table is False, and nothing is created or changed."""
    if table not in ("campaign", "experiment"):
        raise ValueError(f"table must be 'campaign' or 'experiment', got {table!r}")
    if not path.is_file():
        return False
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)) as db:
            return db.execute(f"SELECT 1 FROM {table} WHERE name = ?", (name,)).fetchone() is not None
    except sqlite3.Error:
        return False


def refuse_old_default(url: str, *, file: str | Path, table: str, name: str, setting: str,
                       cwd: str | Path | None = None) -> None:
    """Raise :class:`DatabaseLocationError` when ``url`` (the file's default database) lacks the
    campaign or experiment ``name`` but ``activelabel.db`` in ``cwd`` (default: the current
    folder), the old default, holds it. ``setting`` names the file's database key for the
    message ("[database] url", "database_url under [experiment]")."""
    new = sqlite_file(url)
    old = (Path.cwd() if cwd is None else Path(cwd)) / DEFAULT_DATABASE_FILE
    if new is None or not old.is_file() or new.resolve() == old.resolve():
        return
    if holds(new, table, name) or not holds(old, table, name):
        return
    old, new = old.resolve(), new.resolve()
    keep = f"--database-url sqlite:///{old} (or {setting} = \"sqlite:///{old}\" in {file})"
    if new.exists():
        todo = (f"{new} exists already (do not overwrite it): keep using the old file with {keep}, "
                "or run the campaign again under another name")
    else:
        todo = f"move {old} to {new}, or keep using it where it is with {keep}"
    raise DatabaseLocationError(
        f"{table} {name!r} of {file} is in {old}, the database of the current folder, where older versions "
        f"kept it; {'an' if table == 'experiment' else 'a'} {table} file's default database is now {new}, next to "
        f"the file, and that has no {table} "
        f"{name!r}. Nothing was created. To continue it, {todo}"
    )


def database_for_file(file: str | Path, chosen: str | None, *, table: str, name: str, setting: str) -> str | None:
    """The database URL of a campaign (``table="campaign"``) or experiment named by its file.

    ``chosen`` (--database-url, else the file's own URL, already anchored at the file's folder)
    wins; else None when ``$ACTIVELABEL_DATABASE_URL`` is set (the caller's resolver reads it);
    else ``activelabel.db`` next to the file, after :func:`refuse_old_default`.
    Raises DatabaseLocationError (see there).
    """
    from activelabel.storage.database import DATABASE_URL_ENV

    if chosen:
        return chosen
    if os.environ.get(DATABASE_URL_ENV):
        return None
    url = default_database_url(Path(file).parent)
    refuse_old_default(url, file=file, table=table, name=name, setting=setting)
    return url
