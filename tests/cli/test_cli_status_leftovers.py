"""`status` and `sync` name the samples of earlier, completed rounds that are still out.

Trial 16 F2: with exactly 3 annotators per task, one skipped a task (Label Studio stores nothing
for a skip), the round completed at min_new_labels, and the sample stayed out through four more
rounds: no annotator would be served it again, and nothing said so. The rounds, selections and
answers are written by hand here, so every figure shown is known.
"""

from __future__ import annotations

from typer.testing import CliRunner

from activelabel import cli
from activelabel.campaign import CampaignConfig
from activelabel.campaign.leftovers import earlier_rounds_still_out
from activelabel.storage import (
    Annotation,
    AnnotationStatus,
    Campaign,
    Round,
    RoundKind,
    RoundStatus,
    SampleSplit,
    Selection,
    open_engine,
    session_scope,
)
from activelabel.storage.repository import NewSample, add_samples, samples_by_uri


def _team(engine, name: str = "team") -> dict[str, int]:
    """Round 1 (complete): s0-s2 resolved by 3 annotators, s3 answered by 2 (the third skipped),
    s4 answered by nobody yet. Round 2 (waiting): s5, answered by 1. Returns sample ids by uri."""
    config = CampaignConfig(name=name, dataset="files", data_pool="/data/images", labels=("cat", "dog"),
                            annotator="labelstudio", annotations_per_task=3, evaluation_size=0,
                            min_new_labels=3, batch_size=5)
    uris = [f"s{i}.png" for i in range(6)]
    with session_scope(engine) as session:
        campaign = Campaign(name=name, task_kind="classification", labels=["cat", "dog"], strategy="entropy",
                            dataset="files", config=config.to_dict())
        session.add(campaign)
        session.flush()
        rounds = [Round(campaign_id=campaign.id, index=1, strategy="entropy", kind=RoundKind.active,
                        status=RoundStatus.complete, labeled_count=3, timings={}),
                  Round(campaign_id=campaign.id, index=2, strategy="entropy", kind=RoundKind.active,
                        status=RoundStatus.waiting_for_labels, labeled_count=3, timings={})]
        session.add_all(rounds)
        session.flush()
        add_samples(session, campaign.id, [NewSample(u, f"h-{u}", SampleSplit.pool) for u in uris])
        ids = samples_by_uri(session, campaign.id, uris)
        for rank, uri in enumerate(uris):
            rnd = rounds[0] if rank < 5 else rounds[1]
            session.add(Selection(campaign_id=campaign.id, round_id=rnd.id, sample_id=ids[uri], rank=rank,
                                  score=0.0, predicted_label="", confidence=0.0, external_task_id=str(100 + rank)))
        answers = [(u, who) for u in uris[:3] for who in ("a", "b", "c")] + [("s3.png", "a"), ("s3.png", "b"),
                                                                            ("s5.png", "a")]
        for n, (uri, who) in enumerate(answers):
            round_id = rounds[1].id if uri == "s5.png" else rounds[0].id  # no round: a seed label
            session.add(Annotation(campaign_id=campaign.id, sample_id=ids[uri], round_id=round_id, annotator=who,
                                   label="cat", source="labelstudio", external_id=str(n),
                                   status=AnnotationStatus.accepted))
    return ids


def test_status_names_the_samples_of_completed_rounds_still_out(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'team.db'}"
    engine = open_engine(url)
    ids = _team(engine)
    out = earlier_rounds_still_out(engine, "team")
    assert [(s.sample_id, s.task_id, s.round_index, s.accepted, s.needed) for s in out.samples] == [
        (ids["s3.png"], "103", 1, 2, 3), (ids["s4.png"], "104", 1, 0, 3)]  # s5 is the waiting round's
    result = CliRunner().invoke(cli.app, ["status", "team", "--database-url", url], terminal_width=400)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert (f"2 samples of earlier, completed rounds are still out with the annotators: sample {ids['s3.png']} "
            f"(round 1, task 103): 2 of 3 accepted answers; sample {ids['s4.png']} (round 1, task 104): 0 of 3 "
            "accepted answers; they go along with every round's tasks until they resolve. A task that every "
            "annotator has answered or skipped is not served to them again: ask another annotator to answer it, or "
            "the one who skipped to answer after all.") in text


def test_nothing_is_said_when_every_earlier_sample_resolved_and_a_long_list_is_cut(tmp_path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'team.db'}")
    ids = _team(engine)
    with session_scope(engine) as session:
        campaign_id = session.query(Campaign.id).scalar()
        first = session.query(Round.id).filter(Round.index == 1).scalar()
        for uri, who in (("s3.png", "c"), ("s4.png", "a"), ("s4.png", "b"), ("s4.png", "c")):
            session.add(Annotation(campaign_id=campaign_id, sample_id=ids[uri], round_id=first, annotator=who,
                                   label="dog",
                                   source="labelstudio", external_id=f"late-{uri}-{who}",
                                   status=AnnotationStatus.accepted))
    assert earlier_rounds_still_out(engine, "team").describe() is None
    from activelabel.campaign.leftovers import EarlierRoundsStillOut, LeftOver

    many = EarlierRoundsStillOut([LeftOver(i, str(i), 1, 0, 3) for i in range(7)])
    text = many.describe()
    assert text.startswith("7 samples of earlier, completed rounds are still out with the annotators: sample 0 ")
    assert "sample 4 (round 1, task 4): 0 of 3 accepted answers; and 2 more; they go along" in text
    assert "ask another annotator" not in text  # nobody answered any: they are only late


def _skip(engine, ids: dict[str, int], uri: str, who: str, index: int) -> None:
    with session_scope(engine) as session:
        campaign_id = session.query(Campaign.id).scalar()
        round_id = session.query(Round.id).filter(Round.index == index).scalar()
        session.add(Annotation(campaign_id=campaign_id, sample_id=ids[uri], round_id=round_id, annotator=who,
                               label="", source="labelstudio", external_id=f"skip-{uri}-{who}",
                               status=AnnotationStatus.skipped, reason="skipped in Label Studio"))


def test_status_names_set_aside_samples_as_skipped_with_who_skipped_and_what_to_do(tmp_path) -> None:
    """s3 (round 1, complete): a and b answered, c skipped -> set aside, named apart from s4 (still
    out). s5 (round 2, waiting): a answered, b and c skipped -> set aside, so the waiting round
    needs nothing more and says so; `status --round 2` counts the round's skipped sample."""
    url = f"sqlite:///{tmp_path / 'team.db'}"
    engine = open_engine(url)
    ids = _team(engine)
    _skip(engine, ids, "s3.png", "c", 1)
    _skip(engine, ids, "s5.png", "b", 2)
    _skip(engine, ids, "s5.png", "c", 2)
    out = earlier_rounds_still_out(engine, "team")
    assert [s.sample_id for s in out.samples] == [ids["s4.png"]]
    assert [(s.sample_id, s.round_index, s.task_id, s.skipped_by) for s in out.set_aside] == [
        (ids["s3.png"], 1, "103", ("c",))]
    result = CliRunner().invoke(cli.app, ["status", "team", "--database-url", url], terminal_width=400)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert (f"1 sample set aside (skipped, and no annotator left to answer): sample {ids['s3.png']} (round 1, "
            "task 103) skipped by c; answer it in Label Studio's Data Manager to label it after all; it is not "
            "offered again by activelabel.") in text
    assert ("Round 2 waits: 0 of 1 samples resolved, 0 needed; the next sync completes it. 1 sample set aside "
            f"(skipped, and no annotator left to answer): sample {ids['s5.png']} (round 2, task 105) skipped by "
            "b, c; answer it in Label Studio's Data Manager") in text
    rounds = CliRunner().invoke(cli.app, ["status", "team", "--round", "2", "--database-url", url],
                                terminal_width=400)
    assert rounds.exit_code == 0, rounds.output
    said = " ".join(rounds.output.split())
    assert (f"Round 2 · 1 sample skipped in Label Studio · 1 sample set aside (skipped, and no annotator left "
            f"to answer): sample {ids['s5.png']} (round 2, task 105) skipped by b, c;") in said


def test_a_skip_alone_of_three_is_still_out_and_not_annotated(tmp_path) -> None:
    """Only c skipped s4 of 3 per task: others may still answer, so it stays out (not set aside),
    and a skip is neither an answer nor a rejected one in the round table."""
    from activelabel.campaign.summary import round_progress

    engine = open_engine(f"sqlite:///{tmp_path / 'team.db'}")
    ids = _team(engine)
    _skip(engine, ids, "s4.png", "c", 1)
    out = earlier_rounds_still_out(engine, "team")
    assert [s.sample_id for s in out.samples] == [ids["s3.png"], ids["s4.png"]] and out.set_aside == []
    first = round_progress(engine, "team")[0]
    assert (first.annotated, first.resolved, first.rejected) == (4, 3, 0)


def test_a_long_set_aside_list_is_cut_and_the_advice_follows_the_number() -> None:
    from activelabel.campaign.skips import SetAside, set_aside_words

    assert set_aside_words([]) is None
    many = set_aside_words([SetAside(i, 2, str(100 + i), ("a", "b")) for i in range(7)])
    assert many.startswith("7 samples set aside (skipped, and no annotator left to answer): sample 0 (round 2, "
                           "task 100) skipped by a, b; ")
    assert many.endswith("sample 4 (round 2, task 104) skipped by a, b; and 2 more; answer them in Label Studio's "
                         "Data Manager to label them after all; they are not offered again by activelabel.")
    assert SetAside(3, 1, None, ("c",)).describe() == "sample 3 (round 1) skipped by c"
