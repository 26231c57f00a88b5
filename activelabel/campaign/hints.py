"""Follow-up commands suggested in messages, written so that they work from any folder.

A campaign named by its file keeps its database next to that file, so ``activelabel sync NAME``
run from another folder opens another database and fails. The CLI therefore computes a
``command_ref`` (the campaign file's absolute path, or the name plus ``--database-url``) and
passes it down; every hint goes through :func:`follow_up`.
"""

from __future__ import annotations

__all__ = ["follow_up"]


def follow_up(command: str, campaign_name: str, command_ref: str | None = None) -> str:
    """A command to suggest, e.g. ```activelabel sync /abs/campaign.toml```: the CLI passes as
    ``command_ref`` the campaign file's absolute path when the run was given one (its database
    sits next to it, so a name alone fails from another folder), else the name with the
    ``--database-url`` that was given; without one the campaign's name is used."""
    return f"`activelabel {command} {command_ref or campaign_name}`"
