"""A hand-made campaign with three annotators per task, shared by the agreement tests
(tests/campaign/test_agreement.py, tests/report/test_report_agreement.py): round 1 (evaluation)
holds img0001 answered 7, 7, 1 (agreement 2/3) and img0056 answered 7, 1, 4 (a split decision,
resolved as 7); round 2 (cold start, waiting) holds img0100 answered 2, 2, 2 and img0101 with two
of its three answers (3, 5: not resolved). Written through the repository functions into any
engine, so every figure is known."""

from __future__ import annotations

from datetime import datetime, timezone

from activelabel.campaign import CampaignConfig
from activelabel.storage import (
    Campaign,
    Round,
    RoundKind,
    RoundStatus,
    SampleSplit,
    Selection,
    session_scope,
)
from activelabel.storage.repository import NewAnnotation, NewSample, add_annotations, add_samples, samples_by_uri

DIGITS = tuple(str(d) for d in range(10))
PEOPLE = ("alice", "bob", "carol")


def answer(sample_id: int, who: str, label: str, round_id: int, minute: int) -> NewAnnotation:
    return NewAnnotation(sample_id=sample_id, annotator=who, label=label, source="labelstudio",
                         external_id=f"{sample_id}-{who}", round_id=round_id,
                         updated_at=datetime(2026, 11, 30, 5, minute, tzinfo=timezone.utc))


def team_campaign(engine, name: str = "team", per_task: int = 3) -> dict[str, int]:
    """The campaign of the module docstring; returns sample ids by URI, the campaign id as
    ``campaign`` and the round ids as ``round1`` / ``round2``."""
    config = CampaignConfig(name=name, dataset="files", data_pool="/data/images", labels=DIGITS,
                            annotator="labelstudio", evaluation_size=2, batch_size=2,
                            annotations_per_task=per_task)
    with session_scope(engine) as session:
        campaign = Campaign(name=name, labels=list(DIGITS), strategy=config.strategy, dataset="files",
                            config=config.to_dict())
        session.add(campaign)
        session.flush()
        rounds = []
        for index, kind, status in ((1, RoundKind.evaluation, RoundStatus.complete),
                                    (2, RoundKind.cold_start, RoundStatus.waiting_for_labels)):
            row = Round(campaign_id=campaign.id, index=index, strategy=config.strategy, kind=kind, status=status,
                        timings={})
            session.add(row)
            session.flush()
            rounds.append(row.id)
        uris = {"img0001.png": SampleSplit.evaluation, "img0056.png": SampleSplit.evaluation,
                "img0100.png": SampleSplit.pool, "img0101.png": SampleSplit.pool}
        add_samples(session, campaign.id, [NewSample(u, f"h-{u}", split) for u, split in uris.items()])
        ids = samples_by_uri(session, campaign.id, uris)
        for rank, uri in enumerate(uris):
            session.add(Selection(campaign_id=campaign.id, round_id=rounds[rank // 2], sample_id=ids[uri], rank=rank,
                                  score=0.0, predicted_label="0", confidence=0.0, external_task_id=str(rank + 1)))
    return {**ids, "round1": rounds[0], "round2": rounds[1], "campaign": campaign.id}


ANSWERS = {"img0001.png": ("7", "7", "1"), "img0056.png": ("7", "1", "4"), "img0100.png": ("2", "2", "2"),
           "img0101.png": ("3", "5")}


def answer_all(engine, name: str, ids: dict[str, int], answers: dict[str, tuple[str, ...]] = ANSWERS) -> None:
    with session_scope(engine) as session:
        campaign_id = session.query(Campaign.id).filter(Campaign.name == name).scalar()
        add_annotations(session, campaign_id, [
            answer(ids[uri], who, label, ids["round1" if uri in ("img0001.png", "img0056.png") else "round2"], minute)
            for uri, labels in answers.items() for minute, (who, label) in enumerate(zip(PEOPLE, labels))])
