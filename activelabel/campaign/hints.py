"""Follow-up commands suggested in messages, written so that they work from any folder and run
as printed.

A campaign named by its file keeps its database next to that file, so ``activelabel sync NAME``
run from another folder opens another database and fails. The CLI therefore computes a
``command_ref`` (the campaign file's absolute path, or the name plus ``--database-url``) and
passes it down; every hint goes through :func:`follow_up`.

A ``--database-url`` in a ``command_ref`` never holds a password (:func:`database_option`): a
masked ``***`` password would be used literally and fail, and the real one must not reach
messages or Prefect's stored parameters. The hint then says once that the password comes from
``$ACTIVELABEL_DATABASE_PASSWORD`` (:func:`password_note`).
"""

from __future__ import annotations

import shlex

__all__ = ["database_option", "follow_up", "password_note"]

PASSWORD_NOTE = " (with the database password in $ACTIVELABEL_DATABASE_PASSWORD)"


def database_option(url: str) -> str:
    """`` --database-url URL`` for a suggested command: the URL without its password."""
    from activelabel.storage.database import without_password

    return f" --database-url {shlex.quote(without_password(url))}"


def password_note(command_ref: str | None) -> str:
    """:data:`PASSWORD_NOTE` when ``command_ref`` names a server database by a user (so it may
    need a password, which the URL in a hint never holds); else empty."""
    if not command_ref or "--database-url" not in command_ref:
        return ""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        words = shlex.split(command_ref)
        parsed = make_url(words[words.index("--database-url") + 1])
    except (ValueError, IndexError, ArgumentError):
        return ""
    if parsed.get_backend_name() == "sqlite" or not parsed.username:
        return ""
    return PASSWORD_NOTE


def follow_up(command: str, campaign_name: str, command_ref: str | None = None, *,
              extra: str = "", note: bool = True) -> str:
    """A command to suggest, e.g. ```activelabel sync /abs/campaign.toml```: the CLI passes as
    ``command_ref`` the campaign file's absolute path when the run was given one (its database
    sits next to it, so a name alone fails from another folder), else the name with the
    ``--database-url`` that was given; without one the campaign's name is used. ``extra``:
    options after it (`` --rounds 3``). ``note=False`` leaves out :func:`password_note`, for
    a message that suggests several commands and says it once, after the last."""
    line = f"`activelabel {command} {command_ref or campaign_name}{extra}`"
    return line + (password_note(command_ref) if note else "")
