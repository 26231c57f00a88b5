"""Prefect flows wiring the pipeline, annotation and storage; no math and no SQL here."""

from activelabel.flows.round import campaign_flow, round_flow, sync_flow

__all__ = ["campaign_flow", "round_flow", "sync_flow"]
