"""Finding a campaign by name, and the round a run would work on: the read-only commands' lookups.

Kept apart from :mod:`activelabel.campaign.steps` (which imports torch for training and scoring)
so that ``status``, ``sync`` and ``export`` check a campaign name without loading torch.
"""

from __future__ import annotations

from sqlalchemy import Engine, select

from activelabel.errors import CampaignStateError
from activelabel.storage import Campaign, RoundStatus, session_scope
from activelabel.storage.repository import latest_round


def campaign_id(engine: Engine, name: str) -> int:
    """The id of the campaign named ``name``. Raises CampaignStateError naming it and listing
    a few of the database's campaigns (a mistyped name is then easy to correct)."""
    with session_scope(engine) as session:
        found = session.scalar(select(Campaign.id).where(Campaign.name == name))
        if found is None:
            names = list(session.scalars(select(Campaign.name).order_by(Campaign.name)))
            raise CampaignStateError(unknown_campaign_message(name, names))
        return found


def unknown_campaign_message(name: str, names: list[str], shown: int = 5) -> str:
    """``no campaign named 'x' in this database; its campaigns: a, b (and 3 more)``."""
    if not names:
        return f"no campaign named {name!r} in this database: it holds no campaign yet"
    listed = ", ".join(repr(n) for n in names[:shown])
    more = f" (and {len(names) - shown} more: `activelabel status` lists them)" if len(names) > shown else ""
    return f"no campaign named {name!r} in this database; its campaigns: {listed}{more}"


def current_round_index(engine: Engine, campaign_id: int) -> int:
    """The index of the round a run would work on: the unfinished one, else the next."""
    with session_scope(engine) as session:
        last = latest_round(session, campaign_id)
        if last is None:
            return 1
        return last.index if last.status != RoundStatus.complete else last.index + 1


def unfinished_round_id(engine: Engine, campaign_id: int) -> int | None:
    """The id of the campaign's latest round if it is not complete (the round a run works on),
    else None."""
    with session_scope(engine) as session:
        last = latest_round(session, campaign_id)
        return None if last is None or last.status == RoundStatus.complete else last.id
