"""A serve tick whose campaign data is refused: said once, not at every tick.

A refusal (the pool folder renamed, a manifest gone, a labeled image changed, the database not
answering: an :class:`~activelabel.errors.ActiveLabelError` that is not a wait for a service or
another process's round) stops a tick before its round starts, and nothing in the database is
changed. Serve stays up: the user may fix the folder, and the next tick goes on by itself. But
a schedule ticks every few minutes, and without this each tick would print the same error,
leave two Failed runs (the tick and its round) with the same traceback on the Prefect server,
and look like new trouble to anyone alerting on failed runs.

So the first refusal ends its tick run in a Failed state named ``Refused`` with the message
(an alert fires once; the round subflow's traceback is recorded once), and while the next
ticks find the same fault, each checks the data before starting the round (no round subflow,
no traceback) and ends in a Cancelled state named ``Still refused``, saying one short line.
The previous tick's state is read from the Prefect server (each tick is its own process), so
this needs nothing stored in the campaign's database.
"""

from __future__ import annotations

import logging
from uuid import UUID

from sqlalchemy import Engine

from activelabel.errors import ActiveLabelError, RoundAlreadyRunningError, ServiceUnavailableError

log = logging.getLogger(__name__)

REFUSED, STILL_REFUSED = "Refused", "Still refused"


def is_refusal(error: BaseException) -> bool:
    """Whether ``error`` is a refusal of the campaign's data or settings, which the user fixes
    and the next tick retries: an ActiveLabelError, but not a wait (an annotation server
    down: the round waits in its step) and not another process's round."""
    return isinstance(error, ActiveLabelError) and not isinstance(
        error, (ServiceUnavailableError, RoundAlreadyRunningError))


def short_reason(message: str) -> str:
    """The fault without its advice: the message up to its first "; " (what a repeat says)."""
    return message.split("; ", 1)[0]


def previous_refusal() -> str | None:
    """The message of the previous tick of this serve's deployment when that tick ended
    refused (``Refused`` or ``Still refused``), else None; None too outside a deployment run
    (a flow called directly) or when the Prefect server cannot say (then the tick just runs)."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterId, FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.runtime import deployment, flow_run

    try:
        deployment_id, current = deployment.id, flow_run.id
        if not deployment_id or not current:
            return None
        ended = [StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED]
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[UUID(str(deployment_id))])),
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(not_any_=[UUID(str(current))]),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=ended))),
                sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=1)
    except Exception as error:  # noqa: BLE001 - only the wording of the tick depends on it
        log.debug("Could not read the previous tick from the Prefect server: %s", error)
        return None
    if not runs or runs[0].state is None or runs[0].state.name not in (REFUSED, STILL_REFUSED):
        return None
    return runs[0].state.message or None


def recheck(engine: Engine, campaign_id: int) -> None:
    """What the round's start refuses, checked without starting it (nothing written): the
    campaign's data and model settings as serve checks them at start, and the stored files
    as every round start checks them. Raises the refusal, if any."""
    from sqlalchemy import select

    from activelabel.campaign import steps
    from activelabel.campaign.config import CampaignConfig
    from activelabel.campaign.setup import check_dataset
    from activelabel.storage import Campaign, session_scope

    with session_scope(engine) as session:
        config = CampaignConfig.from_dict(session.scalar(select(Campaign.config).where(Campaign.id == campaign_id)))
    check_dataset(config)
    steps.check_files_before_work(engine, campaign_id)


def refused_state(message: str, previous: str | None):
    """The tick run's final state for a refusal with ``message``: ``Still refused`` (Cancelled)
    when the previous tick was refused the same way, else ``Refused`` (Failed)."""
    from prefect.states import Cancelled, Failed

    if previous == message:
        return Cancelled(name=STILL_REFUSED, message=message)
    return Failed(name=REFUSED, message=message)


def refused_line(message: str, previous: str | None) -> str:
    """What the tick says on serve's terminal (after "tick: ")."""
    if previous == message:
        return f"still refused: {short_reason(message)}"
    return (f"refused: {message} (serve stays up and tries again at each tick: once this is fixed the "
            "next tick goes on, no restart needed)")
