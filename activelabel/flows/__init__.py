"""Prefect flows wiring the pipeline, annotation and storage; no math and no SQL here."""

from activelabel.flows import prefect_api
from activelabel.flows.round import campaign_flow, round_flow, sync_flow

# Prefect's temporary API server (no PREFECT_API_URL): a start-up bound that says what to do,
# and a server that ends with this process.
prefect_api.install()

__all__ = ["campaign_flow", "round_flow", "sync_flow"]
