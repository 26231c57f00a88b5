"""A campaign's life: settings, setup, and the steps of each round (no Prefect here)."""

from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.setup import prepare_campaign
from activelabel.campaign.summary import RoundSummary, campaign_summaries, round_summary

__all__ = ["CampaignConfig", "RoundSummary", "campaign_summaries", "prepare_campaign", "round_summary"]
