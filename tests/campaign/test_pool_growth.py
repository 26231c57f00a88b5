"""Images dropped into a running campaign's pool folder join its pool before the next round:
hashed like creation's, copies of stored images made copies, unreadable ones named and
skipped, a round in flight untouched, and ``data.follow_new_files = false`` keeps the pool
frozen. Real files, real SQLite (and PostgreSQL when the test server is set), real rounds
with the simulated annotator."""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Engine, func, select

from activelabel.campaign import prepare_campaign, steps
from activelabel.campaign.data import clear_cache
from activelabel.campaign.file import load_campaign_file
from activelabel.campaign.growth import Growth, join_before_round, join_new_files
from activelabel.errors import CampaignStateError
from activelabel.pipeline.sources import file_sha256, file_signature
from activelabel.storage import Round, Sample, SampleProblem, SampleSplit, Score, Selection, session_scope
from test_own_data import campaign_file, make_data
from tests_support_owndata import write_manifest
from tests_support_postgres import sqlite_or_postgres_engine
from tests_support_rounds import run_round, run_rounds

# Evaluation set off, active rounds once 10 labels exist: round 1 is a cold start, then active.
ACTIVE_SOON = {"evaluation_size = 20": "evaluation_size = 0", "# min_labels_to_train = ...": "min_labels_to_train = 10"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request, tmp_path) -> Iterator[Engine]:
    with sqlite_or_postgres_engine(request.param, tmp_path / "al.db", "al_growth_test") as engine:
        yield engine


@pytest.fixture(autouse=True)
def _fresh_data_cache():
    clear_cache()
    yield
    clear_cache()


def add_images(root: Path, truth: dict[str, str], count: int, *, folder: str = "later", start: int = 0) -> list[str]:
    """``count`` new digit images under ``images/<folder>/``, unlike any stored one (a marker
    pixel per image); their labels join ``truth.csv``. Returns their URIs."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    uris = []
    for n in range(start, start + count):
        pixels = (digits.images[n] * 255 / 16).astype(np.uint8)
        image = np.asarray(Image.fromarray(pixels, mode="L").resize((16, 16), Image.NEAREST)).copy()
        image[0, 0], image[0, 1] = 1 + n % 250, 1 + n // 250  # no stored image has these bytes
        uri = f"{folder}/new{n:04d}.png"
        (root / "images" / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(root / "images" / uri)
        truth[uri] = str(digits.target[n])
        uris.append(uri)
    write_manifest(root / "truth.csv", truth, base=root / "images")
    return uris


def samples(engine: Engine) -> dict[str, Sample]:
    with session_scope(engine) as session:
        rows = list(session.scalars(select(Sample)))
        session.expunge_all()
    return {s.uri: s for s in rows}


def scored_ids(engine: Engine, round_id: int) -> set[int]:
    with session_scope(engine) as session:
        return set(session.scalars(select(Score.sample_id).where(Score.round_id == round_id)))


def selected_ids(engine: Engine, round_id: int | None = None) -> set[int]:
    query = select(Selection.sample_id)
    if round_id is not None:
        query = query.where(Selection.round_id == round_id)
    with session_scope(engine) as session:
        return set(session.scalars(query))


def test_images_added_between_runs_join_are_scored_and_selected(tmp_path, engine, caplog) -> None:
    truth = make_data(tmp_path, count=30)
    config, _ = load_campaign_file(campaign_file(tmp_path, **ACTIVE_SOON))
    campaign_id = prepare_campaign(engine, config)
    run_rounds(engine, campaign_id, 2)  # cold start, then active: 20 labeled, 10 left
    before = samples(engine)
    assert len(before) == 30

    new = add_images(tmp_path, truth, 12)
    taken = selected_ids(engine)
    caplog.set_level(logging.INFO, logger="activelabel")
    campaign_id = prepare_campaign(engine, config)  # the next `activelabel run`
    third = run_round(engine, campaign_id)

    after = samples(engine)
    assert set(after) == set(before) | set(new)
    for uri in new:  # stored the way creation stores a sample
        sample, path = after[uri], tmp_path / "images" / uri
        assert sample.split == SampleSplit.pool and sample.duplicate_of is None
        assert sample.content_hash == file_sha256(path)
        assert (sample.size_bytes, sample.mtime_ns) == file_signature(path)
    assert "campaign 'own': 12 new images in data.pool joined the pool, 12 to label" \
        in caplog.text
    # The round after the files arrived scored every unlabeled sample: the 10 old and the 12 new.
    new_ids = {after[uri].id for uri in new}
    assert len(taken) == 20
    assert scored_ids(engine, third) == ({s.id for s in before.values()} - taken) | new_ids
    run_round(engine, campaign_id)
    # 22 unlabeled, two batches of 10 taken: at most 10 old ones, so at least 10 new ones.
    assert len(selected_ids(engine) & new_ids) >= 10
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Round)) == 4


def test_a_copy_of_a_stored_image_is_not_a_second_sample_to_label(tmp_path, engine) -> None:
    truth = make_data(tmp_path, count=40)
    config, _ = load_campaign_file(campaign_file(tmp_path, **{
        "evaluation_size = 20": "evaluation_size = 5", "# min_labels_to_train = ...": "min_labels_to_train = 10"}))
    campaign_id = prepare_campaign(engine, config)
    run_rounds(engine, campaign_id, 2)  # evaluation (5), cold start (10)
    stored = samples(engine)
    labeled = next(s for s in stored.values() if s.id in selected_ids(engine) and s.split == SampleSplit.pool)
    evaluation = next(s for s in stored.values() if s.split == SampleSplit.evaluation)
    images = tmp_path / "images"
    (images / "dropped").mkdir()
    for name, source in (("copy-labeled.png", labeled.uri), ("copy-eval.png", evaluation.uri)):
        shutil.copy(images / source, images / "dropped" / name)
        truth[f"dropped/{name}"] = truth[source]
    twin = add_images(tmp_path, truth, 1, folder="dropped")[0]
    shutil.copy(images / twin, images / "dropped" / "twin-b.png")  # two new files, one content
    truth["dropped/twin-b.png"] = truth[twin]
    write_manifest(tmp_path / "truth.csv", truth, base=images)

    growth = join_new_files(engine, campaign_id, config)
    assert (growth.joined, growth.copies, growth.unreadable) == (4, 3, ())
    after = samples(engine)
    assert after["dropped/copy-labeled.png"].duplicate_of == labeled.id
    assert after["dropped/copy-labeled.png"].split == SampleSplit.pool
    # A copy of an evaluation image sits in the evaluation split: never in the pool.
    assert after["dropped/copy-eval.png"].duplicate_of == evaluation.id
    assert after["dropped/copy-eval.png"].split == SampleSplit.evaluation
    assert after[twin].duplicate_of is None and after["dropped/twin-b.png"].duplicate_of == after[twin].id

    run_rounds(engine, campaign_id, 3)
    with session_scope(engine) as session:
        picked = list(session.scalars(select(Sample.content_hash).join(Selection, Selection.sample_id == Sample.id)))
        copies = {s.id for s in after.values() if s.duplicate_of is not None}
        scored = set(session.scalars(select(Score.sample_id)))
    assert len(picked) == len(set(picked))  # no content is ever sent twice
    assert not (selected_ids(engine) | scored) & copies
    assert after[twin].id in scored


def test_a_corrupt_new_file_is_named_and_skipped_and_the_run_goes_on(tmp_path, engine, caplog) -> None:
    truth = make_data(tmp_path, count=30)
    config, _ = load_campaign_file(campaign_file(tmp_path, **ACTIVE_SOON))
    campaign_id = prepare_campaign(engine, config)
    run_rounds(engine, campaign_id, 1)
    good = add_images(tmp_path, truth, 5)
    broken = {"later/zero.png": b"", "later/text.png": b"hello, not an image"}
    for uri, content in broken.items():
        (tmp_path / "images" / uri).write_bytes(content)
        truth[uri] = "0"
    write_manifest(tmp_path / "truth.csv", truth, base=tmp_path / "images")

    caplog.set_level(logging.INFO, logger="activelabel")
    round_id = run_round(engine, campaign_id)  # the next round starts: the files join first
    for uri in broken:
        assert f"new image {tmp_path / 'images' / uri} cannot be read" in caplog.text
    assert "7 new images in data.pool joined the pool, 5 to label (2 unreadable)" in caplog.text
    with session_scope(engine) as session:
        problems = dict(session.execute(select(SampleProblem.uri, SampleProblem.reason)).all())
        status = session.get(Round, round_id).status.value
    assert set(problems) == set(broken) and all(problems.values())
    assert status == "complete"
    after = samples(engine)
    broken_ids = {after[uri].id for uri in broken}
    assert {after[uri].id for uri in good} <= scored_ids(engine, round_id)
    assert not broken_ids & (scored_ids(engine, round_id) | selected_ids(engine))
    run_rounds(engine, campaign_id, 1)  # the next round neither adds nor reports them again
    assert len(samples(engine)) == 37 and not broken_ids & selected_ids(engine)


def test_follow_new_files_false_keeps_the_pool_frozen_until_turned_on(tmp_path, engine) -> None:
    truth = make_data(tmp_path, count=30)
    frozen, _ = load_campaign_file(campaign_file(
        tmp_path, **ACTIVE_SOON, **{"follow_new_files = true": "follow_new_files = false"}))
    assert frozen.follow_new_files is False
    campaign_id = prepare_campaign(engine, frozen)
    run_rounds(engine, campaign_id, 1)
    add_images(tmp_path, truth, 6)
    prepare_campaign(engine, frozen)
    run_rounds(engine, campaign_id, 1)
    assert len(samples(engine)) == 30
    # The setting may change between runs (it keeps the campaign's meaning): the files join.
    following, _ = load_campaign_file(campaign_file(tmp_path, **ACTIVE_SOON))
    assert prepare_campaign(engine, following) == campaign_id
    round_id = run_round(engine, campaign_id)
    assert len(samples(engine)) == 36
    assert {s.id for s in samples(engine).values() if s.uri.startswith("later/")} <= scored_ids(engine, round_id)


def test_a_round_resumed_after_new_files_selects_only_what_it_scored(tmp_path, engine) -> None:
    truth = make_data(tmp_path, count=30)
    config, _ = load_campaign_file(campaign_file(tmp_path, **ACTIVE_SOON))
    campaign_id = prepare_campaign(engine, config)
    run_rounds(engine, campaign_id, 1)
    # Round 2 (active) stops after scoring, as if the process died before selecting.
    round_id = steps.start_round(engine, campaign_id)
    steps.train_step(engine, round_id)
    steps.score_step(engine, round_id)
    scored = scored_ids(engine, round_id)
    new = add_images(tmp_path, truth, 15)

    # The next run resumes round 2 at selecting: the files wait for the round after it.
    prepare_campaign(engine, config)
    assert steps.start_round(engine, campaign_id) == round_id
    assert not set(new) & set(samples(engine))
    # Even samples added while the round is in flight (a process that joined them anyway) are
    # never selected by it: selection reads the round's own scores.
    assert join_new_files(engine, campaign_id, config).joined == 15
    new_ids = {samples(engine)[uri].id for uri in new}
    for step in (steps.select_step, steps.push_step, steps.sync_step):
        step(engine, round_id)
    picked = selected_ids(engine, round_id)
    assert len(picked) == 10 and picked <= scored and not picked & new_ids

    following = run_round(engine, campaign_id)
    assert new_ids <= scored_ids(engine, following)


def test_a_removed_unlabeled_image_is_skipped_and_a_removed_labeled_one_stops_the_run(tmp_path, engine) -> None:
    original = make_data(tmp_path, count=30)
    with_evaluation = {**ACTIVE_SOON, "evaluation_size = 20": "evaluation_size = 5"}
    config, _ = load_campaign_file(campaign_file(tmp_path, **with_evaluation))
    campaign_id = prepare_campaign(engine, config)
    run_rounds(engine, campaign_id, 1)  # the evaluation round: 5 labeled
    stored = samples(engine)
    taken = selected_ids(engine)
    unlabeled = sorted(s.uri for s in stored.values() if s.id not in taken and s.split == SampleSplit.pool)
    kept = (tmp_path / "images" / unlabeled[0]).read_bytes()
    for uri in unlabeled[:3]:
        (tmp_path / "images" / uri).unlink()
    # A renamed file: its old name is gone, its content stands as a sample under the new name.
    (tmp_path / "images" / unlabeled[3]).rename(tmp_path / "images" / "renamed.png")
    truth = {**_truth(tmp_path), "renamed.png": _truth(tmp_path)[unlabeled[3]]}
    truth = {uri: label for uri, label in truth.items() if uri not in unlabeled[:4]}  # a simulation's truth follows
    write_manifest(tmp_path / "truth.csv", truth, base=tmp_path / "images")
    prepare_campaign(engine, config)  # the next `activelabel run` goes on
    run_rounds(engine, campaign_id, 2)  # a cold start, then an active round
    with session_scope(engine) as session:
        problems = dict(session.execute(select(SampleProblem.uri, SampleProblem.reason)).all())
        kinds = [k.value for k in session.scalars(select(Round.kind).order_by(Round.index))]
    assert set(problems) == set(unlabeled[:4]) and "gone" in problems[unlabeled[0]]
    renamed = samples(engine)["renamed.png"]
    assert renamed.duplicate_of is None and renamed.content_hash == stored[unlabeled[3]].content_hash
    assert renamed.id in scored_ids(engine, _round_id(engine, 2))
    assert kinds == ["evaluation", "cold_start", "active"]
    gone_ids = {stored[uri].id for uri in unlabeled[:4]}
    scored = scored_ids(engine, _round_id(engine, 2)) | scored_ids(engine, _round_id(engine, 3))
    assert not gone_ids & (selected_ids(engine) | scored)

    # Put back, a removed image returns to the pool (and a simulation's truth needs its row again:
    # a pool image the truth cannot answer is refused up front).
    (tmp_path / "images" / unlabeled[0]).write_bytes(kept)
    clear_cache()
    with pytest.raises(Exception, match=rf"1 pool image\(s\) .*without a row: {re.escape(unlabeled[0])}\)"):
        prepare_campaign(engine, config)
    truth[unlabeled[0]] = original[unlabeled[0]]
    write_manifest(tmp_path / "truth.csv", truth, base=tmp_path / "images")
    clear_cache()
    prepare_campaign(engine, config)
    with session_scope(engine) as session:
        assert set(session.scalars(select(SampleProblem.uri))) == set(unlabeled[1:4])
        from activelabel.storage.repository import unlabeled_pool_columns

        assert stored[unlabeled[0]].id in set(unlabeled_pool_columns(session, campaign_id).ids.tolist())

    labeled = next(s.uri for s in stored.values() if s.id in taken)
    (tmp_path / "images" / labeled).unlink()
    with pytest.raises(CampaignStateError, match="1 stored image.*with labels are not found any more"):
        prepare_campaign(engine, config)


def _round_id(engine: Engine, index: int) -> int:
    with session_scope(engine) as session:
        return session.scalar(select(Round.id).where(Round.index == index))


def test_cli_run_says_which_images_joined_and_status_counts_them(tmp_path) -> None:
    import subprocess
    import sys

    exe = [sys.executable, "-m", "activelabel.cli"]
    env = {**os.environ, "COLUMNS": "400"}
    truth = make_data(tmp_path, count=30)
    path = campaign_file(tmp_path, **ACTIVE_SOON, **{"rounds = 10": "rounds = 1"})
    first = subprocess.run([*exe, "run", str(path)], capture_output=True, text=True, cwd=tmp_path, env=env,
                           timeout=900)
    assert first.returncode == 0, first.stderr
    add_images(tmp_path, truth, 8)
    (tmp_path / "images" / "later" / "broken.png").write_bytes(b"not an image")
    second = subprocess.run([*exe, "run", str(path), "--rounds", "2", "-v"], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=900)
    assert second.returncode == 0, second.stderr
    logged = " ".join(second.stderr.split())
    assert "campaign 'own': 9 new images in data.pool joined the pool, 8 to label (1 unreadable)" in logged
    # a long path may be folded by the log's line wrapping, even inside the path: compare without spaces
    assert f"newimage{tmp_path / 'images' / 'later' / 'broken.png'}cannotberead" in "".join(logged.split())
    status = subprocess.run([*exe, "status", str(path)], capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=600)
    assert status.returncode == 0, status.stderr
    assert "Samples: 38 pool (+1 unreadable) · 0 byte-identical copies" in status.stdout  # trial 15 F15
    assert "1 unreadable (skipped) · 20 labeled" in status.stdout


def _truth(root: Path) -> dict[str, str]:
    """``truth.csv`` as {URI relative to images/: label}."""
    import csv

    with (root / "truth.csv").open() as handle:
        return {Path(os.path.relpath(root / row["path"], root / "images")).as_posix(): row["label"]
                for row in csv.DictReader(handle)}


def test_rows_added_to_a_pool_manifest_join(tmp_path, engine) -> None:
    truth = make_data(tmp_path, count=30)
    write_manifest(tmp_path / "pool.csv", {uri: "" for uri in truth}, base=tmp_path / "images")
    path = campaign_file(tmp_path, **ACTIVE_SOON, **{'pool = "images/"': 'pool = "pool.csv"'})
    config, _ = load_campaign_file(path)
    campaign_id = prepare_campaign(engine, config)
    new = add_images(tmp_path, truth, 4)  # on disk, but the manifest does not list them yet
    assert join_before_round(engine, campaign_id) == Growth()
    listed = {**{uri: "" for uri in truth if uri not in new}, **{uri: "" for uri in new[:3]}}
    write_manifest(tmp_path / "pool.csv", listed, base=tmp_path / "images")
    growth = join_before_round(engine, campaign_id)
    assert (growth.joined, growth.copies) == (3, 0)
    # URIs stay relative to the manifest's folder, as at creation.
    assert {uri for uri in samples(engine) if uri.startswith("images/later/")} == {f"images/{u}" for u in new[:3]}


def test_the_joined_line_counts_what_can_be_labeled_in_words() -> None:
    from activelabel.campaign.growth import describe_joined

    assert describe_joined(30, 1, 1) == ("30 new images in data.pool joined the pool, 28 to label "
                                         "(1 copy of a stored image, 1 unreadable)")
    assert describe_joined(37, 2, 0) == "37 new images in data.pool joined the pool, 35 to label (2 copies of stored images)"
    assert describe_joined(1, 0, 0) == "1 new image in data.pool joined the pool, 1 to label"


def _named_in(message: str) -> list[str]:
    """The images an ``annotator.truth`` coverage error names (``...: a, b, c and N more); ...``)."""
    listed = message.split(": ", 2)[2].split(")", 1)[0] if "without a row: " in message else ""
    return [name.split(" and ")[0] for name in listed.split(", ")]


def test_a_simulation_truth_missing_pool_images_is_refused_up_front_at_creation_reopen_and_growth(
        tmp_path, engine) -> None:
    """F11 of trial 11: pool images without a truth row were found only mid-round. Now one error
    names them and the manifest before anything is written: when the campaign is created, when
    it is opened again, and when new files would join the pool."""
    truth = make_data(tmp_path, count=30)
    manifest = tmp_path / "truth.csv"
    dropped = list(truth)[5:9]
    write_manifest(manifest, {u: v for u, v in truth.items() if u not in dropped}, base=tmp_path / "images")
    config, _ = load_campaign_file(campaign_file(tmp_path, **ACTIVE_SOON))
    with pytest.raises(Exception) as refused:
        prepare_campaign(engine, config)
    message = str(refused.value)
    assert message.startswith(f"annotator.truth: 4 pool image(s) have no true label in the annotator.truth manifest "
                              f"{manifest.resolve()}, so the simulated annotator could not answer them (without a row: ")
    assert message.endswith(" and 1 more); add their rows to the manifest, or remove the images from data.pool; "
                            "nothing was written")
    assert set(_named_in(message)) < set(dropped) and len(_named_in(message)) == 3
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Sample)) == 0

    write_manifest(manifest, truth, base=tmp_path / "images")
    clear_cache()
    campaign_id = prepare_campaign(engine, config)
    write_manifest(manifest, {u: v for u, v in truth.items() if u != dropped[0]}, base=tmp_path / "images")
    clear_cache()
    with pytest.raises(Exception, match=rf"annotator.truth: 1 pool image\(s\) .* \(without a row: {re.escape(dropped[0])}\); "
                                        r"add their rows .*; no round was started$"):
        prepare_campaign(engine, config)  # the next `activelabel run`

    write_manifest(manifest, truth, base=tmp_path / "images")
    new = add_images(tmp_path, dict(truth), 3)
    write_manifest(manifest, truth, base=tmp_path / "images")  # the new images, without their truth rows
    with pytest.raises(Exception, match=r"annotator.truth: 3 pool image\(s\) .*; the new images were not added and "
                                        "no round was started$") as refused:
        join_new_files(engine, campaign_id, config)
    assert sorted(_named_in(str(refused.value))) == sorted(new)
    assert len(samples(engine)) == 30
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Round)) == 0
