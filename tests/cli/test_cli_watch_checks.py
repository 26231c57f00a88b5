"""`watch` checks the stored files before every round as `run` does (one function,
``integrity.check_stored_files``, called when ``run`` opens the campaign and by every round
start): a labeled image gone or changed refuses the next round with a line naming the file and
what to do, exit 1, nothing started or changed (trial10 findings 1 and 14). A restored file is no
longer counted unreadable; the ending line stays true when the campaign went past --rounds and
names a round still out (finding 8); a stop during a waiting round's sync leaves it waiting
(finding 15)."""

from __future__ import annotations

import shutil
import signal

import numpy as np
from PIL import Image
from sqlalchemy import select

from activelabel import stop
from activelabel.campaign import steps
from activelabel.campaign.integrity import check_stored_files
from activelabel.campaign.config import CampaignConfig
from activelabel.flows.watch import ending_line
from activelabel.storage import (
    Campaign, Round, RoundKind, RoundStatus, Sample, SampleProblem, Selection, open_engine, session_scope,
)

from test_cli import run_cli
from tests_support_campaignfile import write_campaign_file
from tests_support_owndata import write_manifest, write_unlabeled_pool


def _rounds(engine) -> list[tuple[int, RoundStatus]]:
    with session_scope(engine) as session:
        return [(r.index, r.status) for r in session.scalars(select(Round).order_by(Round.index))]


def test_watch_refuses_a_round_on_labeled_images_gone_or_changed_and_goes_on_once_restored(tmp_path):
    images = tmp_path / "images"
    truth = write_unlabeled_pool(images, count=30)
    write_manifest(tmp_path / "truth.csv", truth, base=images)
    write_campaign_file(tmp_path / "own.toml", "own", simulated=True, labels=sorted(set(truth.values())), settings={
        "campaign.rounds": 1, "campaign.batch_size": 10, "campaign.mc_samples": 2, "campaign.epochs": 1,
        "campaign.strategy": "entropy", "model.fixed_epochs": True, "data.evaluation_size": 0})
    ran = run_cli("run", "own.toml", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    engine = open_engine(f"sqlite:///{tmp_path / 'activelabel.db'}")
    with session_scope(engine) as session:
        labeled = sorted(session.scalars(select(Sample.uri).join(Selection, Selection.sample_id == Sample.id)
                                         .where(Sample.uri.like("%.png"))))
        hashes = dict(session.execute(select(Sample.uri, Sample.content_hash)).all())
        campaign_id = session.scalar(select(Campaign.id))
    gone_uri, changed_uri = labeled[0], labeled[1]
    gone, changed = images / gone_uri, images / changed_uri
    kept, original = tmp_path / "kept.png", changed.read_bytes()
    shutil.move(gone, kept)
    # The simulation's truth lists only files that exist (it answers from them); this one is labeled.
    write_manifest(tmp_path / "truth.csv", {u: t for u, t in truth.items() if u != gone_uri}, base=images)
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(changed, format="PNG")

    refused = run_cli("watch", "own.toml", "--rounds", "2", "--poll-seconds", "1", cwd=tmp_path)
    said = " ".join(refused.stderr.split())
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert (f"error: 1 stored image(s) with labels are not found any more (e.g. {gone}); restore them, or "
            "point the campaign file's data paths at the folder that holds them; no round was started and "
            "nothing was changed") in said
    assert "Traceback" not in refused.stderr
    assert _rounds(engine) == [(1, RoundStatus.complete)]

    shutil.move(kept, gone)
    refused = run_cli("watch", "own.toml", "--rounds", "2", "--poll-seconds", "1", cwd=tmp_path)
    said = " ".join(refused.stderr.split())
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert (f"error: 1 labeled image(s) changed since they were labeled (e.g. {changed}); stop this command and "
            "run `activelabel run` on the campaign file with --accept-changes to keep their labels, or "
            "--relabel-changes to send them to the annotators again; no round was started and nothing was "
            "changed") in said
    assert _rounds(engine) == [(1, RoundStatus.complete)]
    with session_scope(engine) as session:
        assert dict(session.execute(select(Sample.uri, Sample.content_hash)).all()) == hashes  # nothing re-hashed

    # Put back as it was; a 'file does not exist' record of it (as an older watch left) is cleared
    # by the next check, so status no longer counts a labeled sample unreadable.
    changed.write_bytes(original)
    with session_scope(engine) as session:
        session.add(SampleProblem(campaign_id=campaign_id, uri=gone_uri, reason="file does not exist"))
    went_on = run_cli("watch", "own.toml", "--rounds", "2", "--poll-seconds", "1", cwd=tmp_path)
    assert went_on.returncode == 0, went_on.stderr[-2000:]
    assert _rounds(engine) == [(1, RoundStatus.complete), (2, RoundStatus.complete)]
    with session_scope(engine) as session:
        assert session.scalars(select(SampleProblem.uri)).all() == []

    # The file asks for 1 round, the campaign has 2: the line says so, truthfully.
    ended = run_cli("watch", "own.toml", "--poll-seconds", "1", cwd=tmp_path)
    assert ended.returncode == 0, ended.stderr[-2000:]
    assert " ".join(ended.stderr.split()).endswith(
        "Campaign 'own': 2 rounds complete (watch was asked for 1), so watch ends; for more, raise `rounds` "
        "in the campaign file or pass --rounds N")

    # A round waiting for labels (as a Label Studio round does): a stop landing in its sync cuts
    # nothing, so the round stays waiting; the ending line names it and what finishes it.
    with session_scope(engine) as session:
        waiting = Round(campaign_id=campaign_id, index=3, strategy="random", kind=RoundKind.active,
                        status=RoundStatus.waiting_for_labels, timings={})
        session.add(waiting)
        session.flush()
        sample_id = session.scalar(select(Sample.id).where(Sample.id.not_in(select(Selection.sample_id))).limit(1))
        session.add(Selection(campaign_id=campaign_id, round_id=waiting.id, sample_id=sample_id, rank=0,
                              score=0.0, predicted_label="", confidence=0.0))
        waiting_id = waiting.id
    steps.mark_failed(engine, waiting_id, stop.Stopped(signal.SIGINT))
    with session_scope(engine) as session:
        row = session.get(Round, waiting_id)
        assert (row.status, row.failed_step, row.error) == (RoundStatus.waiting_for_labels, None, None)
    ref = str(tmp_path / "own.toml")
    assert ending_line(engine, campaign_id, "own", 2, 1, ref) == (
        f"Campaign 'own': 2 rounds complete (watch was asked for 1), so watch ends; round 3 is still waiting for "
        f"labels (1 sample(s) out with the annotators): `activelabel sync {ref}` collects them, "
        f"`activelabel watch {ref} --rounds 3` finishes it")
    # A round an older watch marked failed in its wait: resume names the step it resumes at.
    with session_scope(engine) as session:
        row = session.get(Round, waiting_id)
        row.status, row.failed_step, row.error = RoundStatus.failed, RoundStatus.waiting_for_labels, "stopped by Ctrl-C"
    resumed = run_cli("resume", "own.toml", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming round 3 of 'own' at step waiting for labels" in " ".join(resumed.stderr.split())
    assert _rounds(engine)[-1] == (3, RoundStatus.waiting_for_labels)  # back to waiting (its sample was never sent)
    # A waiting round is not checked at each poll (its sync reads no file); a new round is.
    gone.unlink()
    with session_scope(engine) as session:
        config = CampaignConfig.from_dict(session.get(Campaign, campaign_id).config)
    steps._check_files_before_work(engine, campaign_id)
    try:
        check_stored_files(engine, campaign_id, config)
    except Exception as error:
        assert "1 stored image(s) with labels are not found any more" in str(error)
    else:
        raise AssertionError("a labeled image gone was not refused")
