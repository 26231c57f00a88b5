"""Campaigns on a folder of unlabeled images: evaluation set first, cold start, active rounds,
export; copies, unreadable files, moved and changed data. Real files, real SQLite, the round's
own steps (the flows wrap exactly these)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from activelabel.campaign import campaign_summaries, prepare_campaign, steps
from activelabel.campaign.data import clear_cache
from activelabel.campaign.export import export_labels
from activelabel.campaign.file import load_campaign_file
from activelabel.errors import CampaignStateError
from activelabel.storage import (
    Annotation, AnnotationStatus, Campaign, Round, Sample, SampleProblem, SampleSplit, Selection, open_engine,
    session_scope,
)
from tests_support_campaignfile import write_campaign_file
from tests_support_owndata import LABELS, write_manifest, write_unlabeled_pool
from tests_support_rounds import run_rounds

EXE = [sys.executable, "-m", "activelabel.cli"]
SMALL = {"campaign.batch_size": 10, "campaign.epochs": 2, "campaign.mc_samples": 3, "data.evaluation_size": 20}


def campaign_file(root: Path, name: str = "own", **replace: str) -> Path:
    return write_campaign_file(root / f"{name}.toml", name, simulated=True, settings=SMALL, replace=replace)


def make_data(root: Path, count: int = 80) -> dict[str, str]:
    truth = write_unlabeled_pool(root / "images", count=count)
    write_manifest(root / "truth.csv", truth, base=root / "images")
    return truth


@pytest.fixture(autouse=True)
def _fresh_data_cache():
    clear_cache()
    yield
    clear_cache()


def test_evaluation_first_then_cold_start_then_active_and_export_equals_truth(tmp_path, caplog) -> None:
    truth = make_data(tmp_path)
    config, _ = load_campaign_file(campaign_file(tmp_path))
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, config)
    with caplog.at_level("INFO", logger="activelabel"):
        run_rounds(engine, campaign_id, 4)
    # The training line names what it measured on, as status does (trial 13 F4: it said "test").
    trained = [m for m in caplog.messages if m.startswith("Round 3: trained on 10 labels")]
    assert len(trained) == 1 and ", evaluation accuracy " in trained[0] and "test accuracy" not in trained[0]

    summaries = campaign_summaries(engine, "own")
    assert [s.kind for s in summaries] == ["evaluation", "cold_start", "active", "active"]
    assert [s.labeled for s in summaries] == [0, 0, 10, 20]
    assert summaries[0].test_accuracy is None and summaries[2].test_accuracy is not None
    with session_scope(engine) as session:
        evaluation = {s.id for s in session.scalars(select(Sample).where(Sample.split == SampleSplit.evaluation))}
        assert len(evaluation) == 20
        by_round = session.execute(select(Round.index, Selection.sample_id).join(Round)).all()
    # The yardstick is labeled first and never picked again; the evaluation round took it all.
    assert {sid for index, sid in by_round if index == 1} == evaluation
    assert not {sid for index, sid in by_round if index > 1} & evaluation

    export_path = tmp_path / "labels.csv"
    count = export_labels(engine, "own", export_path)
    rows = list(csv.DictReader(export_path.open()))
    assert count.rows == len(rows) == 20 + 3 * 10 and count.copies == 0
    root = (tmp_path / "images").resolve()
    for row in rows:
        assert row["label"] == truth[Path(row["path"]).relative_to(root).as_posix()]
        assert row["annotations"] == "1" and row["agreement"] == "1.0"
    assert {row["round"] for row in rows} == {"1", "2", "3", "4"}
    assert sum(row["split"] == "evaluation" for row in rows) == 20


def test_cold_start_batch_is_seeded_and_random(tmp_path) -> None:
    make_data(tmp_path)
    picks = []
    for name in ("one", "two"):
        config, _ = load_campaign_file(campaign_file(tmp_path, name, **{"evaluation_size = 20": "evaluation_size = 0"}))
        engine = open_engine(f"sqlite:///{tmp_path}/{name}.db")
        campaign_id = prepare_campaign(engine, config)
        run_rounds(engine, campaign_id, 1)
        with session_scope(engine) as session:
            picks.append(sorted(session.scalars(select(Sample.uri).join(Selection, Selection.sample_id == Sample.id))))
            kinds = list(session.scalars(select(Round.kind)))
        assert [k.value for k in kinds] == ["cold_start"]
    assert picks[0] == picks[1] and len(picks[0]) == 10


def test_test_folder_is_the_yardstick_and_seeds_train_the_first_round(tmp_path, caplog) -> None:
    truth = make_data(tmp_path, count=90)
    names = sorted(truth)
    test_rows = {n: truth[n] for n in names[:20]}
    seed_rows = {n: truth[n] for n in names[20:35]}
    write_manifest(tmp_path / "test.csv", test_rows, base=tmp_path / "images")
    write_manifest(tmp_path / "seeds.csv", seed_rows, base=tmp_path / "images")
    config, _ = load_campaign_file(campaign_file(
        tmp_path, **{"# test = ...": 'test = "test.csv"', "# labeled = ...": 'labeled = "seeds.csv"'}))
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, config)
    with caplog.at_level("INFO", logger="activelabel"):
        run_rounds(engine, campaign_id, 1)
    summary = campaign_summaries(engine, "own")[0]
    assert summary.kind == "active" and summary.labeled == 15 and summary.test_accuracy is not None
    assert any(m.startswith("Round 1: trained on 15 labels, test accuracy ") for m in caplog.messages)
    with session_scope(engine) as session:
        splits = dict(session.execute(select(Sample.split, func.count()).group_by(Sample.split)).all())
        given = session.scalar(select(func.count()).select_from(Annotation).where(Annotation.source == "given"))
    assert splits == {SampleSplit.test: 20, SampleSplit.pool: 70} and given == 15


def test_identical_images_are_one_sample(tmp_path) -> None:
    """8 byte-identical copies among 40 others: one sample, one label for all copies."""
    truth = make_data(tmp_path, count=40)
    original = tmp_path / "images" / sorted(truth)[0]
    for i in range(8):
        copy = tmp_path / "images" / "copies" / f"copy{i}{original.suffix}"
        copy.parent.mkdir(exist_ok=True)
        shutil.copy(original, copy)
        truth[copy.relative_to(tmp_path / "images").as_posix()] = truth[sorted(truth)[0]]
    write_manifest(tmp_path / "truth.csv", truth, base=tmp_path / "images")
    test_rows = {k: truth[k] for k in list(truth)[-3:]}  # 3 copies named in the test set
    write_manifest(tmp_path / "test.csv", test_rows, base=tmp_path / "images")
    config, _ = load_campaign_file(campaign_file(
        tmp_path, **{"# test = ...": 'test = "test.csv"', 'strategy = "bald"': 'strategy = "margin"',
                     "batch_size = 10": "batch_size = 6", "# min_labels_to_train = ...": "min_labels_to_train = 2"}))
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, config)
    with session_scope(engine) as session:
        copies = list(session.scalars(select(Sample).where(Sample.content_hash == session.scalar(
            select(Sample.content_hash).where(Sample.uri == original.relative_to(tmp_path / "images").as_posix())))))
    assert len(copies) == 9
    assert {c.split for c in copies} == {SampleSplit.test}  # never straddling test and pool
    assert sum(c.duplicate_of is None for c in copies) == 1
    from activelabel.campaign.summary import data_counts

    # status and the report count the copies apart, in the split they landed in
    assert data_counts(engine, config.name).describe().startswith(
        "Samples: 39 pool, 1 test (+8 copies) · 8 byte-identical copies")
    run_rounds(engine, campaign_id, 3)
    with session_scope(engine) as session:
        picked = list(session.scalars(select(Sample.content_hash).join(Selection, Selection.sample_id == Sample.id)))
    assert len(picked) == len(set(picked))  # at most one copy of each content, ever


def test_copies_in_the_pool_share_one_answer_in_the_export(tmp_path) -> None:
    truth = make_data(tmp_path, count=40)
    first = sorted(truth)[0]
    for i in range(3):
        shutil.copy(tmp_path / "images" / first, tmp_path / "images" / f"dup{i}.png")
        truth[f"dup{i}.png"] = truth[first]
    write_manifest(tmp_path / "truth.csv", truth, base=tmp_path / "images")
    config, _ = load_campaign_file(campaign_file(tmp_path, **{"evaluation_size = 20": "evaluation_size = 0",
                                                              "batch_size = 10": "batch_size = 40"}))
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, config)
    run_rounds(engine, campaign_id, 1)  # the cold start labels every representative
    exported = export_labels(engine, "own", tmp_path / "labels.jsonl")
    import json

    from activelabel.campaign.summary import data_counts

    rows = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert len(rows) == 43
    copies = [r for r in rows if r["copy_of"]]
    assert len(copies) == 3 and {r["label"] for r in copies} == {truth[first]}
    # The copies carry their original's label but are not labeled samples: export and status agree.
    assert (exported.rows, exported.copies, exported.labeled) == (43, 3, 40)
    assert exported.labeled == data_counts(engine, "own").labeled
    assert exported.describe() == "40 labeled samples (+3 copies labeled with their originals)"
    # copy_of names the original's file as path names each file: absolute, and the original's row.
    original = str((tmp_path / "images" / first).resolve())
    assert {r["copy_of"] for r in copies} == {original}
    assert all(Path(r["path"]).is_absolute() for r in rows)
    assert sum(r["path"] == original and r["copy_of"] is None for r in rows) == 1


def test_unreadable_images_are_recorded_and_never_selected(tmp_path) -> None:
    truth = make_data(tmp_path, count=40)
    some_png = next((tmp_path / "images").glob("**/*.png"))
    broken = {"zero.png": b"", "truncated.png": some_png.read_bytes()[:60], "text.png": b"hello, not an image"}
    for name, content in broken.items():
        (tmp_path / "images" / name).write_bytes(content)
        truth[name] = "0"
    write_manifest(tmp_path / "truth.csv", truth, base=tmp_path / "images")
    config, _ = load_campaign_file(campaign_file(tmp_path, **{
        "evaluation_size = 20": "evaluation_size = 0", "# min_labels_to_train = ...": "min_labels_to_train = 10",
        "batch_size = 10": "batch_size = 12"}))
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, config)
    run_rounds(engine, campaign_id, 3)  # cold start (random), then two active rounds
    with session_scope(engine) as session:
        problems = dict(session.execute(select(SampleProblem.uri, SampleProblem.reason)).all())
        selected = set(session.scalars(select(Sample.uri).join(Selection, Selection.sample_id == Sample.id)))
    assert set(problems) == set(broken)
    assert all(problems.values())
    assert not selected & set(broken) and len(selected) == 36


def test_changed_labeled_image_stops_the_run_until_the_user_decides(tmp_path) -> None:
    make_data(tmp_path, count=60)
    path = campaign_file(tmp_path, **{"evaluation_size = 20": "evaluation_size = 0"})
    config, _ = load_campaign_file(path)
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, config)
    run_rounds(engine, campaign_id, 1)
    with session_scope(engine) as session:
        labeled_uri = session.scalar(select(Sample.uri).join(Selection, Selection.sample_id == Sample.id).limit(1))
        unlabeled_uri = session.scalar(select(Sample.uri).where(Sample.id.not_in(select(Selection.sample_id))).limit(1))
    for uri in (labeled_uri, unlabeled_uri):
        target = tmp_path / "images" / uri
        Image.fromarray(np.full((16, 16), 7, np.uint8)).save(target, format="PNG" if uri.endswith("png") else "JPEG")
    with pytest.raises(CampaignStateError, match="1 labeled image.*changed.*--accept-changes"):
        prepare_campaign(engine, config)
    with session_scope(engine) as session:  # a second annotator skipped the old picture
        labeled_id = session.scalar(select(Sample.id).where(Sample.uri == labeled_uri))
        session.add(Annotation(campaign_id=campaign_id, sample_id=labeled_id, round_id=None, annotator="ann2",
                               label="", source="labelstudio", external_id="skip-1",
                               status=AnnotationStatus.skipped, reason="skipped in Label Studio"))
    prepare_campaign(engine, config, relabel_changes=True)
    with session_scope(engine) as session:
        # Withdrawn with the answer: a skip of the old picture must not set the new one aside.
        statuses = set(session.scalars(select(Annotation.status).join(Sample).where(Sample.uri == labeled_uri)))
        reselectable = session.scalar(select(func.count()).select_from(Selection).join(Sample).where(Sample.uri == labeled_uri))
    assert statuses == {AnnotationStatus.rejected} and reselectable == 0
    prepare_campaign(engine, config)  # decided once: the next run goes on
    # Sent out again, the annotator's new answer is stored and the round completes.
    from activelabel.storage import RoundKind, RoundStatus

    with session_scope(engine) as session:
        sample_id = session.scalar(select(Sample.id).where(Sample.uri == labeled_uri))
        again = Round(campaign_id=campaign_id, index=2, strategy="random", kind=RoundKind.cold_start,
                      status=RoundStatus.pushing, timings={})
        session.add(again)
        session.flush()
        session.add(Selection(campaign_id=campaign_id, round_id=again.id, sample_id=sample_id, rank=0,
                              score=0.0, predicted_label="", confidence=0.0))
        again_id = again.id
    steps.push_step(engine, again_id)
    assert steps.sync_step(engine, again_id).pending == 0
    with session_scope(engine) as session:
        statuses = sorted(s.value for s in session.scalars(select(Annotation.status).where(Annotation.sample_id == sample_id)))
        assert statuses == ["accepted", "rejected", "rejected"]
        assert session.get(Round, again_id).status == RoundStatus.complete


def test_a_moved_folder_continues_with_relocate_and_spelling_is_not_a_move(tmp_path) -> None:
    make_data(tmp_path / "a", count=40)
    path = campaign_file(tmp_path / "a", **{"evaluation_size = 20": "evaluation_size = 0"})
    config, _ = load_campaign_file(path)
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, config)
    respelled = campaign_file(tmp_path / "a", **{"evaluation_size = 20": "evaluation_size = 0",
                                                 'pool = "images/"': 'pool = "./images/../images/"'})
    assert prepare_campaign(engine, load_campaign_file(respelled)[0]) == campaign_id

    shutil.move(tmp_path / "a", tmp_path / "b")
    moved, _ = load_campaign_file(tmp_path / "b" / "own.toml")
    with pytest.raises(CampaignStateError, match="--relocate"):
        prepare_campaign(engine, moved)
    said: list[str] = []
    assert prepare_campaign(engine, moved, relocate=True, say=said.append) == campaign_id
    new_root = (tmp_path / "b" / "images").resolve()
    assert said == [f"Relocated campaign 'own': 40 stored files found at the new place, all present and unchanged "
                    f"(data.pool {(tmp_path / 'a' / 'images').resolve()} -> {new_root})"]
    with session_scope(engine) as session:  # every stored copy of the location is the new one
        campaign = session.get(Campaign, campaign_id)
        assert campaign.dataset == f"files:{new_root}"
        assert campaign.config["data_pool"] == str(new_root)
        assert campaign.config["truth"] == str((tmp_path / "b" / "truth.csv").resolve())
        assert str(tmp_path / "a") not in json.dumps(campaign.config) + campaign.dataset
    said.clear()
    assert prepare_campaign(engine, moved, say=said.append) == campaign_id and said == []  # said once
    run_rounds(engine, campaign_id, 1)
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Selection)) == 10


def test_cli_moved_folder_hints_relocate_then_says_what_it_did_and_lists_the_new_place(tmp_path) -> None:
    """F8/F10 of trial 11: `mv images moved` -> the data error says how a stored campaign goes
    on; `run --relocate` says what it checked; the campaign list shows the new folder only."""
    from tests_support_cli import cli, error_line

    truth = make_data(tmp_path, count=40)
    path = campaign_file(tmp_path, **{"evaluation_size = 20": "evaluation_size = 0", "rounds = 10": "rounds = 1"})
    engine = open_engine(f"sqlite:///{tmp_path}/activelabel.db")  # the file's database: next to it
    campaign_id = prepare_campaign(engine, load_campaign_file(path)[0])
    engine.dispose()
    shutil.move(tmp_path / "images", tmp_path / "moved")

    line = error_line(cli("run", str(path), cwd=tmp_path))
    assert f"data.pool: folder or manifest {tmp_path / 'images'} does not exist" in line
    assert line.endswith("; campaign 'own' exists already: if its data moved, edit data.pool to the new place (and "
                         "any manifest naming the old one) and rerun with --relocate (every stored file is then "
                         "checked at the new place)")
    other = campaign_file(tmp_path, name="new", **{"evaluation_size = 20": "evaluation_size = 0"})
    assert "--relocate" not in error_line(cli("run", str(other), cwd=tmp_path))  # a new campaign: a typo, no hint

    write_manifest(tmp_path / "truth.csv", truth, base=tmp_path / "moved")
    path.write_text(path.read_text().replace('pool = "images/"', 'pool = "moved/"'))
    run = cli("run", str(path), "--relocate", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (f"Relocated campaign 'own': 40 stored files found at the new place, all present and unchanged "
            f"(data.pool {tmp_path / 'images'} -> {tmp_path / 'moved'})") in run.stderr.splitlines()
    listed = cli("status", "--database-url", f"sqlite:///{tmp_path}/activelabel.db", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    cell = next(r for r in listed.stdout.splitlines() if " own " in r).split("│")[3].strip()
    assert f"files:{tmp_path / 'moved'}".startswith(cell.rstrip("…"))  # the table may shorten a long path
    from activelabel.campaign.summary import campaign_overviews

    assert [c.dataset for c in campaign_overviews(engine) if c.name == "own"] == [f"files:{tmp_path / 'moved'}"]
    with session_scope(engine) as session:
        assert session.get(Campaign, campaign_id).dataset == f"files:{tmp_path / 'moved'}"


def test_cli_run_and_export_on_a_campaign_file(tmp_path) -> None:
    truth = make_data(tmp_path, count=60)
    path = campaign_file(tmp_path, **{"rounds = 10": "rounds = 3"})
    env = {**os.environ, "COLUMNS": "200"}
    run = subprocess.run([*EXE, "run", str(path)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
    assert run.returncode == 0, run.stderr
    assert "evaluation" in run.stdout and "cold start" in run.stdout
    out = subprocess.run([*EXE, "export", str(path), "--to", "labels.csv", "--model", "model.pt"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    status = subprocess.run([*EXE, "status", str(path)], capture_output=True, text=True, cwd=tmp_path, env=env,
                            timeout=600)
    assert status.returncode == 0, status.stderr
    assert "Samples: 20 evaluation, 40 pool · 0 byte-identical copies" in status.stdout
    assert "0 unreadable (skipped) · 40 labeled" in status.stdout
    rows = list(csv.DictReader((tmp_path / "labels.csv").open()))
    assert len(rows) == 20 + 2 * 10
    root = (tmp_path / "images").resolve()
    assert all(r["label"] == truth[Path(r["path"]).relative_to(root).as_posix()] for r in rows)
    from activelabel.pipeline.model_file import load_model_file

    _, spec, labels = load_model_file(tmp_path / "model.pt")
    assert labels == LABELS and spec.architecture == "small_cnn"


def test_frozen_resnet18_round_from_a_weights_file_the_test_writes(tmp_path) -> None:
    import torch
    from torchvision.models import resnet18

    from activelabel.pipeline.model import ModelSpec
    from activelabel.storage import ModelCheckpoint

    truth = make_data(tmp_path, count=40)
    seeds = dict(sorted(truth.items())[:12])
    write_manifest(tmp_path / "seeds.csv", seeds, base=tmp_path / "images")
    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pt"
    torch.save(resnet18(weights=None).state_dict(), weights)  # a "pretrained" file of our own
    config, _ = load_campaign_file(campaign_file(tmp_path, **{
        "evaluation_size = 20": "evaluation_size = 0", "# labeled = ...": 'labeled = "seeds.csv"',
        'architecture = "small_cnn"': 'architecture = "resnet18"', "# weights = ...": 'weights = "resnet18.pt"',
        "freeze_backbone = false": "freeze_backbone = true", "image_size = 28": "image_size = 16",
        "# min_labels_to_train = ...": "min_labels_to_train = 10"}))
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    campaign_id = prepare_campaign(engine, config)
    run_rounds(engine, campaign_id, 1)
    summary = campaign_summaries(engine, "own")[0]
    assert summary.kind == "active" and summary.labeled == 12
    with session_scope(engine) as session:
        checkpoint = session.scalar(select(ModelCheckpoint))
        selected = session.scalar(select(func.count()).select_from(Selection))
    spec = ModelSpec.from_dict(checkpoint.architecture)
    assert spec.architecture == "resnet18" and spec.freeze_backbone and selected == 10
    from activelabel.pipeline.checkpoint import load_model

    trained = load_model(spec, checkpoint.state, torch.device("cpu")).state_dict()
    original = torch.load(weights, weights_only=True)
    # The frozen backbone is exactly the file's (1-channel first conv: summed over RGB).
    assert torch.equal(trained["body.layer1.0.conv1.weight"], original["layer1.0.conv1.weight"])
    assert torch.allclose(trained["body.conv1.weight"], original["conv1.weight"].sum(dim=1, keepdim=True))


def test_seed_labels_missing_classes_are_named_in_a_warning(tmp_path, caplog) -> None:
    truth = make_data(tmp_path, count=60)
    two_classes = {k: v for k, v in truth.items() if v in ("3", "7")}
    write_manifest(tmp_path / "seeds.csv", two_classes, base=tmp_path / "images")
    config, _ = load_campaign_file(campaign_file(tmp_path, **{"# labeled = ...": 'labeled = "seeds.csv"'}))
    engine = open_engine(f"sqlite:///{tmp_path}/al.db")
    with caplog.at_level("WARNING"):
        prepare_campaign(engine, config)
    assert "cover 2 of 10 classes; missing: 0, 1, 2, 4, 5, 6, 8, 9" in caplog.text
