"""Where the default database is: next to the campaign (or experiment) file, wherever the
command runs from; in the current folder without a file; never a silent second campaign when
an older version left the campaign in ./activelabel.db. Real files, real CLI processes, real
SQLite. The campaigns are tiny and train nothing: round 1 labels the evaluation set, round 2
is a random cold-start batch."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from activelabel.campaign import prepare_campaign
from activelabel.campaign.file import load_campaign_file
from activelabel.storage import open_engine
from tests_support_campaignfile import write_campaign_file
from tests_support_owndata import write_manifest, write_unlabeled_pool
from tests_support_cli import cli, error_line

TINY = {"campaign.batch_size": 10, "data.evaluation_size": 10, "campaign.rounds": 1, "campaign.epochs": 1,
        "campaign.mc_samples": 2}


def campaign_folder(root: Path, *, database: str | None = None) -> Path:
    """root/camp/own.toml: 40 digit images, a truth manifest, simulated labels; returns the file."""
    folder = root / "camp"
    truth = write_unlabeled_pool(folder / "images", count=40)
    write_manifest(folder / "truth.csv", truth, base=folder / "images")
    database_setting = {} if database is None else {"database.url": database}
    return write_campaign_file(folder / "own.toml", "own", simulated=True, settings={**TINY, **database_setting})


def rounds_in(db: Path) -> list[tuple[str, int, str, str, int]]:
    """(campaign, round index, kind, status, selected samples) for every round in the file."""
    with sqlite3.connect(db) as connection:
        return connection.execute(
            'SELECT c.name, r."index", r.kind, r.status, (SELECT count(*) FROM selection s WHERE s.round_id = r.id) '
            'FROM round r JOIN campaign c ON c.id = r.campaign_id ORDER BY c.name, r."index"').fetchall()


def campaigns_in(db: Path) -> list[str]:
    with sqlite3.connect(db) as connection:
        return [name for (name,) in connection.execute("SELECT name FROM campaign ORDER BY name")]


def test_a_campaign_file_keeps_its_database_next_to_it_from_any_folder(tmp_path) -> None:
    """Run from one folder, continued from another: one campaign, in camp/activelabel.db; the
    line naming the database shows that absolute path; status by file finds it from a third."""
    path = campaign_folder(tmp_path)
    elsewhere, later = tmp_path / "elsewhere", tmp_path / "later"
    elsewhere.mkdir(), later.mkdir()
    db = (path.parent / "activelabel.db").resolve()

    first = cli("run", "../camp/own.toml", cwd=elsewhere)
    assert first.returncode == 0, first.stderr
    assert f"database sqlite:///{db}\n" in first.stderr  # one line, never folded
    assert rounds_in(db) == [("own", 1, "evaluation", "complete", 10)]
    assert not (elsewhere / "activelabel.db").exists()

    again = cli("run", str(path), "--rounds", "2", cwd=later)
    assert again.returncode == 0, again.stderr
    # The option changes a running campaign's setting: said once, naming the file's value.
    notes = [line for line in again.stderr.splitlines() if "overrides" in line]
    assert notes == [f"--rounds 2 overrides campaign.rounds (1) of {path}; the campaign stores it for its later "
                     "rounds (a run of the file without the option puts the file's value back)"], again.stderr
    assert campaigns_in(db) == ["own"]
    assert rounds_in(db) == [("own", 1, "evaluation", "complete", 10), ("own", 2, "cold_start", "complete", 10)]
    assert not (later / "activelabel.db").exists()

    status = cli("status", "../camp/own.toml", cwd=elsewhere)
    assert status.returncode == 0, status.stderr
    rows = [[c.strip() for c in line.split("│")[1:7]] for line in status.stdout.splitlines() if "complete" in line]
    assert rows == [["1", "evaluation", "complete", "10", "10", "10"], ["2", "cold start", "complete", "10", "10", "10"]]
    assert not (elsewhere / "activelabel.db").exists()

    exported = cli("export", "../camp/own.toml", "--to", "labels.csv", cwd=elsewhere)
    assert exported.returncode == 0, exported.stderr
    assert len((elsewhere / "labels.csv").read_text().splitlines()) == 1 + 20
    assert "Created the folder" not in exported.stdout
    into_new = cli("export", "../camp/own.toml", "--to", "nodir/sub/labels.csv", cwd=elsewhere)
    assert into_new.returncode == 0, into_new.stderr
    assert into_new.stdout.splitlines()[0] == f"Created the folder {(elsewhere / 'nodir').resolve()} (it did not exist)"
    assert len((elsewhere / "nodir/sub/labels.csv").read_text().splitlines()) == 1 + 20


def test_a_relative_sqlite_url_in_the_file_is_read_from_the_files_folder(tmp_path) -> None:
    path = campaign_folder(tmp_path, database="sqlite:///data/labels.db")
    (path.parent / "data").mkdir()
    _, url = load_campaign_file(path)
    assert url == f"sqlite:///{(path.parent / 'data' / 'labels.db').resolve()}"

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data").mkdir(parents=True)
    run = cli("run", "../camp/own.toml", cwd=elsewhere)
    assert run.returncode == 0, run.stderr
    assert rounds_in(path.parent / "data" / "labels.db") == [("own", 1, "evaluation", "complete", 10)]
    assert not (elsewhere / "data" / "labels.db").exists() and not (path.parent / "activelabel.db").exists()

    # absolute, in-memory and server URLs are left as written
    for kept in (f"sqlite:///{tmp_path / 'abs.db'}", "sqlite://", "postgresql+psycopg://labeler@db.example/al"):
        assert load_campaign_file(campaign_folder(tmp_path / "k", database=kept))[1] == kept
        shutil.rmtree(tmp_path / "k")


def test_without_a_file_the_database_stays_in_the_current_folder(tmp_path) -> None:
    """`run` without a file and reading commands by name keep ./activelabel.db, shown absolute."""
    shown = f"sqlite:///{(tmp_path / 'activelabel.db').resolve()}"
    line = error_line(cli("status", "own", cwd=tmp_path))
    assert f"no database at {shown}" in line
    assert not (tmp_path / "activelabel.db").exists()

    run = cli("run", "--dataset", "digits", "--campaign", "here", "--rounds", "1", "--batch-size", "10",
              "--initial-labeled", "20", "--mc-samples", "2", "--epochs", "1", "--strategy", "random", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert f"database {shown}\n" in run.stderr
    assert rounds_in(tmp_path / "activelabel.db") == [("here", 1, "active", "complete", 10)]


def test_a_campaign_left_in_the_old_default_is_refused_never_duplicated(tmp_path) -> None:
    """./activelabel.db (where older versions put a campaign file's database) holds the campaign
    and the file's folder has none: run, status and export refuse, naming both files and what to
    do, and create nothing; after the suggested move the campaign continues."""
    path = campaign_folder(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    old, new = (elsewhere / "activelabel.db").resolve(), (path.parent / "activelabel.db").resolve()
    prepare_campaign(open_engine(f"sqlite:///{old}"), load_campaign_file(path)[0])  # as older versions did
    assert campaigns_in(old) == ["own"]

    for command in (["run", "../camp/own.toml"], ["status", "../camp/own.toml"],
                    ["export", "../camp/own.toml", "--to", "labels.csv"], ["resume", "../camp/own.toml"]):
        line = error_line(cli(*command, cwd=elsewhere))
        assert f"campaign 'own' of ../camp/own.toml is in {old}" in line, line
        assert f"default database is now {new}" in line
        assert f"move {old} to {new}" in line and f"--database-url sqlite:///{old}" in line
        assert not new.exists() and not (elsewhere / "labels.csv").exists()
    assert rounds_in(old) == []  # nothing ran

    # the explicit choice the message offers works where it is...
    kept = cli("status", "../camp/own.toml", "--database-url", f"sqlite:///{old}", cwd=elsewhere)
    assert kept.returncode == 0, kept.stderr
    # ...and so does the move
    shutil.move(old, new)
    moved = cli("run", "../camp/own.toml", cwd=elsewhere)
    assert moved.returncode == 0, moved.stderr
    assert rounds_in(new) == [("own", 1, "evaluation", "complete", 10)]
    assert not old.exists()


def test_the_old_default_is_no_obstacle_when_it_lacks_the_campaign_or_is_the_same_file(tmp_path) -> None:
    """./activelabel.db holding other campaigns does not stop a file's campaign; run from the
    file's own folder, the two defaults are one file."""
    path = campaign_folder(tmp_path)
    other = campaign_folder(tmp_path / "o")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    text = other.read_text().replace('name = "own"', 'name = "another"')
    other.write_text(text)
    prepare_campaign(open_engine(f"sqlite:///{elsewhere / 'activelabel.db'}"), load_campaign_file(other)[0])

    status = cli("status", "../camp/own.toml", cwd=elsewhere)
    assert "no database at" in error_line(status)  # the campaign's own default: never run yet
    here = cli("run", "own.toml", cwd=path.parent)
    assert here.returncode == 0, here.stderr
    assert rounds_in(path.parent / "activelabel.db") == [("own", 1, "evaluation", "complete", 10)]
    assert campaigns_in(elsewhere / "activelabel.db") == ["another"]


def test_an_experiment_file_keeps_its_database_next_to_it(tmp_path) -> None:
    """`compare experiment.toml` from another folder writes exp/activelabel.db; `report` given
    the file finds it, and compare's last line says so; a relative database_url and a relative
    ``manifest:`` dataset are read from the file's folder (trial 17 F1, F2)."""
    folder, elsewhere = tmp_path / "exp", tmp_path / "elsewhere"
    folder.mkdir(), elsewhere.mkdir()
    truth = write_unlabeled_pool(folder / "data" / "images", count=40)
    write_manifest(folder / "data" / "labels.csv", truth, base=folder / "data" / "images")
    (folder / "experiment.toml").write_text(
        '[experiment]\nname = "loc"\nstrategies = ["random"]\nseeds = 1\n\n'
        '[campaign]\ndataset = "manifest:data/labels.csv"\nrounds = 1\nbatch_size = 5\ninitial_labeled = 20\n'
        'epochs = 1\nmc_samples = 2\ndevice = "cpu"\n')
    db = (folder / "activelabel.db").resolve()
    ran = cli("compare", "../exp/experiment.toml", cwd=elsewhere)
    assert ran.returncode == 0, ran.stderr
    assert f"database sqlite:///{db}\n" in ran.stderr
    assert rounds_in(db) == [("loc-random-seed0", 1, "active", "complete", 5)]
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT name FROM experiment").fetchall() == [("loc",)]
        assert connection.execute("SELECT dataset FROM campaign").fetchall() == [
            (f"manifest:{(folder / 'data' / 'labels.csv').resolve()}",)]
        uris = {uri for (uri,) in connection.execute("SELECT uri FROM sample")}
        assert uris == {f"images/{name}" for name in truth}  # relative to the manifest's folder
    assert not (elsewhere / "activelabel.db").exists()
    hint = ran.stderr.strip().splitlines()[-1]
    assert hint == f"Report: activelabel report {(folder / 'experiment.toml').resolve()}", ran.stderr

    report = cli(*hint.removeprefix("Report: activelabel ").split(), "--out", "r.html", cwd=elsewhere)
    assert report.returncode == 0, report.stderr
    assert "<h1>Experiment loc</h1>" in (elsewhere / "r.html").read_text(encoding="utf-8")

    (folder / "relative.toml").write_text('[experiment]\nname = "loc"\ndatabase_url = "sqlite:///rel.db"\n')
    line = error_line(cli("report", "../exp/relative.toml", cwd=elsewhere))
    assert f"no database at sqlite:///{(folder / 'rel.db').resolve()}" in line


@pytest.mark.parametrize("kind", ["campaign", "experiment"])
def test_the_refusal_message_names_both_files_when_the_new_place_exists(tmp_path, kind) -> None:
    from activelabel.errors import DatabaseLocationError
    from activelabel.storage.location import refuse_old_default

    cwd, folder = tmp_path / "cwd", tmp_path / "files"
    cwd.mkdir(), folder.mkdir()
    for db, name in ((cwd / "activelabel.db", "x"), (folder / "activelabel.db", "y")):
        with sqlite3.connect(db) as connection:
            connection.execute(f"CREATE TABLE {kind} (id INTEGER PRIMARY KEY, name TEXT)")
            connection.execute(f"INSERT INTO {kind} (name) VALUES (?)", (name,))
    url = f"sqlite:///{folder / 'activelabel.db'}"
    with pytest.raises(DatabaseLocationError) as error:
        refuse_old_default(url, file="f.toml", table=kind, name="x", setting="[database] url", cwd=cwd)
    message = str(error.value)
    assert f"{kind} 'x' of f.toml is in {(cwd / 'activelabel.db').resolve()}" in message
    assert f"{(folder / 'activelabel.db').resolve()} exists already (do not overwrite it)" in message
    assert f"--database-url sqlite:///{(cwd / 'activelabel.db').resolve()}" in message
    refuse_old_default(url, file="f.toml", table=kind, name="y", setting="[database] url", cwd=cwd)  # has it
    refuse_old_default(url, file="f.toml", table=kind, name="z", setting="[database] url", cwd=cwd)  # nowhere


@pytest.mark.parametrize("url, expected", [
    ("sqlite:///labels.db", "sqlite:////campaigns/cats/labels.db"),
    ("sqlite:///db/../labels.db?timeout=5", "sqlite:////campaigns/cats/labels.db?timeout=5"),
    ("sqlite:////data/labels.db", "sqlite:////data/labels.db"),
    ("sqlite://", "sqlite://"),
    ("sqlite:///:memory:", "sqlite:///:memory:"),
    ("postgresql+psycopg://labeler:s3cret@db.example:5432/al", "postgresql+psycopg://labeler:s3cret@db.example:5432/al"),
    ("postgresql+psycopg://labeler@db/al?password=s3cret", "postgresql+psycopg://labeler@db/al?password=s3cret"),
    ("not a url", "not a url"),
])
def test_only_relative_sqlite_paths_are_anchored(url, expected) -> None:
    """Other URLs come back as the same string: a password is never parsed out or re-rendered."""
    from activelabel.storage.location import anchor_sqlite_url

    assert anchor_sqlite_url(url, "/campaigns/cats") == expected
