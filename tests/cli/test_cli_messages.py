"""Messages that name what to do next, and errors that name the file or setting: the exact
words a user reads (real CLI processes, real files, real SQLite)."""

from __future__ import annotations

from pathlib import Path

from activelabel.cli import _command_ref
from activelabel.flows.round import follow_up
from tests_support_cli import cli, error_line



def test_follow_up_commands_name_the_file_absolute_or_the_name_with_its_database(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my camp").mkdir()
    assert _command_ref("own", "my camp/c.toml", None) == f"'{tmp_path / 'my camp' / 'c.toml'}'"
    assert _command_ref("own", None, None) == "own"
    assert _command_ref("own", None, "sqlite:///x.db") == f"own --database-url sqlite:///{tmp_path / 'x.db'}"
    # Runnable as printed: no password (a masked *** would be used literally), and a note on
    # where the password comes from, after the last command of the message.
    monkeypatch.delenv("ACTIVELABEL_DATABASE_PASSWORD", raising=False)
    ref = _command_ref("own", None, "postgresql+psycopg://al:secret@db/al")
    assert ref == "own --database-url postgresql+psycopg://al@db/al"
    assert follow_up("resume", "own", ref) == ("`activelabel resume own --database-url postgresql+psycopg://al@db/al`"
                                               " (with the database password in $ACTIVELABEL_DATABASE_PASSWORD)")
    assert follow_up("sync", "own", ref, note=False).endswith("al@db/al`")
    assert follow_up("sync", "own", None) == "`activelabel sync own`"
    assert follow_up("resume", "own", "/a/c.toml") == "`activelabel resume /a/c.toml`"


def test_a_mistyped_campaign_file_is_said_missing_and_an_unknown_name_lists_the_campaigns(tmp_path) -> None:
    """trial7 #5: `sync campaign.tml` read as a campaign name; now the file is said missing, and
    an unknown name lists the database's campaigns, for every command taking CAMPAIGN."""
    from activelabel.campaign import CampaignConfig, prepare_campaign
    from activelabel.storage import open_engine

    for args in (("sync", "campaign.tml"), ("status", "campaign.tml"), ("resume", "campaign.yaml"),
                 ("watch", "sub/campaign.toml"), ("export", "campaign.json", "--to", "x.csv"),
                 ("report", "campaign.tml")):
        assert error_line(cli(*args, cwd=tmp_path)) == (
            f"error: campaign file {tmp_path / args[1]} does not exist; give an existing campaign file or a "
            "campaign name (`activelabel status` lists them)"), args

    engine = open_engine(f"sqlite:///{tmp_path / 'activelabel.db'}")
    for name in ("beta", "alpha"):
        prepare_campaign(engine, CampaignConfig(name=name, dataset="digits"))
    engine.dispose()
    for args in (("sync", "alpah"), ("status", "alpah"), ("resume", "alpah"), ("watch", "alpah"),
                 ("export", "alpah", "--to", "x.csv")):
        assert error_line(cli(*args, cwd=tmp_path)) == (
            "error: no campaign named 'alpah' in this database; its campaigns: 'alpha', 'beta'"), args
    assert not (tmp_path / "x.csv").exists()


def test_the_unknown_campaign_message_shows_a_few_names() -> None:
    from activelabel.campaign.lookup import unknown_campaign_message

    assert unknown_campaign_message("x", []) == "no campaign named 'x' in this database: it holds no campaign yet"
    assert unknown_campaign_message("x", [f"c{i}" for i in range(7)]) == (
        "no campaign named 'x' in this database; its campaigns: 'c0', 'c1', 'c2', 'c3', 'c4' "
        "(and 2 more: `activelabel status` lists them)")


def own_campaign(root: Path, count: int = 40, **changes: str) -> Path:
    """root/camp/own.toml: ``count`` digit images, a truth manifest, simulated labels, round 1 only
    (the evaluation batch: nothing is trained); returns the file."""
    from tests_support_campaignfile import write_campaign_file
    from tests_support_owndata import write_manifest, write_unlabeled_pool

    folder = root / "camp"
    truth = write_unlabeled_pool(folder / "images", count=count)
    write_manifest(folder / "truth.csv", truth, base=folder / "images")
    return write_campaign_file(folder / "own.toml", "own", simulated=True, replace=changes, settings={
        "campaign.batch_size": 10, "data.evaluation_size": 10, "campaign.rounds": 1})


def test_verbose_keeps_our_lines_and_leaves_http_and_migration_lines_to_vv(tmp_path) -> None:
    """trial7 #6: `-v` was drowned in httpx "HTTP Request:" lines and alembic's setup lines."""
    path = own_campaign(tmp_path)
    verbose = cli("run", str(path), "-v", cwd=tmp_path)
    assert verbose.returncode == 0, verbose.stderr
    assert "Created campaign 'own'" in verbose.stderr  # ours
    assert "HTTP Request:" not in verbose.stderr  # Prefect's client requests (temporary server)
    assert "alembic" not in verbose.stderr and "Running upgrade" not in verbose.stderr  # migrations

    (path.parent / "activelabel.db").unlink()  # a fresh database: the migrations run again
    louder = cli("run", str(path), "-vv", cwd=tmp_path)
    assert louder.returncode == 0, louder.stderr
    assert "Created campaign 'own'" in louder.stderr
    assert "HTTP Request:" in louder.stderr and "Running upgrade" in louder.stderr


def test_a_shrunk_evaluation_set_is_warned_with_the_setting_and_both_numbers(tmp_path, caplog) -> None:
    """trial7 #8: evaluation_size = 6 over 5 readable + 3 unreadable images gave 5, silently."""
    from activelabel.campaign import prepare_campaign
    from activelabel.campaign.file import load_campaign_file
    from activelabel.storage import open_engine

    path = own_campaign(tmp_path, count=8, **{"evaluation_size = 10": "evaluation_size = 6",
                                              "batch_size = 10": "batch_size = 2"})
    images = sorted(p for p in (path.parent / "images").rglob("*") if p.suffix.lower() in (".png", ".jpg"))
    assert len(images) == 8
    for n, image in enumerate(images[5:]):
        image.write_bytes(f"not an image {n}".encode())  # distinct: not byte-identical copies
    config, _ = load_campaign_file(path)
    with caplog.at_level("WARNING", logger="activelabel"):
        prepare_campaign(open_engine(f"sqlite:///{tmp_path / 'al.db'}"), config)
    assert ("data.evaluation_size asks for 6 evaluation images, but only 5 of the pool's images could be read: "
            "the evaluation set has 5 (the unreadable ones are recorded; see `activelabel status`)") in caplog.messages


def test_setting_errors_name_the_campaign_file_and_the_key(tmp_path) -> None:
    """trial7 #9: the document-root refusal named neither annotator.document_root nor the file;
    a wrong data.pool path did not name the file."""
    path = own_campaign(tmp_path, **{'pool = "images/"': 'pool = "photoz/"'})
    assert error_line(cli("run", str(path), cwd=tmp_path)) == (
        f"error: {path}: data.pool: folder or manifest {path.parent / 'photoz'} does not exist; give a folder "
        "of images or a .csv/.jsonl manifest")

    path.unlink()
    root = tmp_path / "served"
    root.mkdir()
    path = own_campaign(tmp_path, **{'kind = "simulated"': 'kind = "labelstudio"',
                                     "# document_root = ...": f'document_root = "{root}"'})
    line = error_line(cli("run", str(path), cwd=tmp_path))
    assert line == (
        f"error: {path}: annotator.document_root: the data folder '{path.parent / 'images'}' is not under the "
        f"document root '{root}' (Label Studio serves only files under its LOCAL_FILES_DOCUMENT_ROOT); move the "
        "images under it, set annotator.document_root to the server's root above them, or leave document_root "
        "out to embed the images")
    assert not (path.parent / "activelabel.db").exists()

    # The data folder is the root itself: Label Studio refuses its root as a project's storage.
    images = path.parent / "images"
    path.write_text(path.read_text().replace(f'document_root = "{root}"', f'document_root = "{images}"'))
    assert error_line(cli("run", str(path), cwd=tmp_path)) == (
        f"error: {path}: annotator.document_root: the data folder '{images}' is the document root itself, and "
        "Label Studio refuses its LOCAL_FILES_DOCUMENT_ROOT as a project's local-files storage; move the images "
        f"into a subfolder (e.g. '{images / 'images'}') and point data.pool there, or leave document_root out to "
        "embed the images")
    assert not (path.parent / "activelabel.db").exists()


def test_a_complete_round_says_how_many_labels_it_trained_on() -> None:
    """trial7 #10: `round 5 complete · 60 labels` read as labels collected."""
    from activelabel.campaign.summary import RoundSummary

    def summary(labeled: int) -> RoundSummary:
        return RoundSummary(5, "complete", labeled, 0.9, None, None, None, 7.84, "v5")

    assert summary(1200).describe() == "round 5 complete · trained on 1,200 labels · test accuracy 0.9000 · 7.8s"
    assert summary(1).describe() == "round 5 complete · trained on 1 label · test accuracy 0.9000 · 7.8s"


def test_help_paragraphs_wrap_at_the_terminal_width_not_at_the_source_lines(tmp_path) -> None:
    """trial7 #10: `watch --help` broke sentences mid-line ("until\\n--rounds rounds ... See\\n
    --min-new-labels of") where the docstring's lines ended."""
    wide = cli("watch", "--help", cwd=tmp_path)
    assert wide.returncode == 0, wide.stderr
    assert ("Checks every --poll-seconds (and at once on a Label Studio webhook with --webhook), until --rounds "
            "rounds are complete or a stopping rule (label budget, target accuracy, plateau, exhausted pool) "
            "stops the campaign: then it says why and exits 0. See --min-new-labels of `run` for \"enough "
            "labels\".") in [line.strip() for line in wide.stdout.splitlines()], wide.stdout
