"""A simulated campaign with several annotators per sample resolves: the oracle answers each
task ``annotations_per_task`` times under distinct names (one vote per annotator)."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from activelabel.campaign import prepare_campaign
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.summary import data_counts, round_progress
from activelabel.storage import Annotation, Round, RoundStatus, open_engine, session_scope
from activelabel.storage.repository import resolved_labels
from tests_support_rounds import run_rounds


def test_three_noisy_simulated_annotators_per_sample_resolve_by_majority(tmp_path) -> None:
    config = CampaignConfig(name="votes-sim", dataset="digits", strategy="entropy", rounds=1, batch_size=4,
                            initial_labeled=10, mc_samples=2, epochs=1, device="cpu",
                            annotations_per_task=3, annotator_noise=0.3, seed=0)
    engine = open_engine(f"sqlite:///{tmp_path / 'sim.db'}")
    campaign_id = prepare_campaign(engine, config)
    run_rounds(engine, campaign_id, 1)
    with session_scope(engine) as session:
        assert session.scalar(select(Round.status)) == RoundStatus.complete
        rnd_id = session.scalar(select(Round.id))
        rows = session.execute(select(Annotation.sample_id, Annotation.annotator, Annotation.label)
                               .where(Annotation.round_id == rnd_id)).all()
        resolved = resolved_labels(session, campaign_id, 3)
    # 4 samples x 3 annotators, named apart.
    assert Counter(name for _, name, _ in rows) == {
        "oracle-noise0.3-1": 4, "oracle-noise0.3-2": 4, "oracle-noise0.3-3": 4}
    for sample_id in {s for s, _, _ in rows}:
        votes = [label for s, _, label in rows if s == sample_id]
        top = Counter(votes).most_common(1)[0][1]
        assert resolved[sample_id].votes == 3
        assert resolved[sample_id].agreement == top / 3
        assert resolved[sample_id].label in votes
    assert round_progress(engine, "votes-sim")[0].resolved == 4
    assert data_counts(engine, "votes-sim").labeled == 10 + 4
