"""Every command's --help as a user reads it: flags show no value hint (typer prints
``--verbose <bool>`` otherwise), options that take a value keep theirs, and the flags still
parse as before."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from activelabel.cli import app

COMMANDS = [[], ["demo"], ["run"], ["init"], ["export"], ["sync"], ["watch"], ["serve"], ["resume"], ["status"],
            ["compare"], ["report"], ["strategies"], ["db"], ["db", "upgrade"], ["db", "current"]]


def _help(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"}, terminal_width=250)
    assert result.exit_code == 0, result.output
    return result.output


def _row(text: str, option: str) -> str:
    """The help table's row of ``option`` (its first line), box characters stripped."""
    line = next(line for line in text.splitlines() if re.search(rf"│ +{re.escape(option)}\b", line))
    return " ".join(line.strip("│ ").split())


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "activelabel")
def test_no_flag_shows_a_value_hint(command) -> None:
    text = _help(*command)
    assert "<bool>" not in text and "list[" not in text
    assert _row(text, "--help") == "--help Show this message and exit."
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert "{" not in usage and not re.search(r"\[[a-z_]+\]", usage), usage  # CAMPAIGN, never {campaign}


def test_usage_lines_name_arguments_in_capitals() -> None:
    def usage(*command: str) -> str:
        return next(" ".join(line.split()) for line in _help(*command).splitlines() if "Usage:" in line)

    assert usage("export").endswith("export [OPTIONS] CAMPAIGN")
    assert usage("status").endswith("status [OPTIONS] [CAMPAIGN]")
    assert usage("init").endswith("init [OPTIONS] CAMPAIGN_FILE")
    assert usage("report").endswith("report [OPTIONS] NAME")


def test_flags_read_as_flags_and_value_options_keep_their_type() -> None:
    run = _help("run")
    assert _row(run, "--verbose").startswith("--verbose -v Log each step")
    assert _row(run, "--relocate").startswith("--relocate Accept a moved data folder")
    assert _row(run, "--rounds").startswith("--rounds <int> Labeling rounds")
    watch = _help("watch")
    assert _row(watch, "--webhook").startswith("--webhook --no-webhook Also listen for Label Studio's webhook")
    assert _row(watch, "--poll-seconds").startswith("--poll-seconds <float range> [x>=0.5] Seconds between")
    compare = _help("compare")
    assert _row(compare, "--initial-balanced").startswith("--initial-balanced Draw the initial labels balanced")
    assert _row(compare, "--fixed-epochs").startswith("--fixed-epochs Train exactly --epochs epochs")
    # --target is repeated, one number each time
    assert _row(_help("report"), "--target").startswith("--target <float> Test accuracy")


def test_a_flag_still_switches_its_behaviour(tmp_path) -> None:
    target = tmp_path / "c.toml"
    runner = CliRunner()
    assert runner.invoke(app, ["init", str(target), "--name", "first"]).exit_code == 0
    refused = runner.invoke(app, ["init", str(target), "--name", "second"])
    assert refused.exit_code != 0 and 'name = "first"' in target.read_text()
    assert runner.invoke(app, ["init", str(target), "--name", "second", "--force"]).exit_code == 0
    assert 'name = "second"' in target.read_text()


def test_every_epochs_option_says_the_200_step_minimum() -> None:
    for command in ("demo", "run", "compare"):
        text = " ".join(_help(command).split())  # the help column wraps
        assert "a round takes at least 200 optimizer steps" in text or "at least 200 optimizer steps are taken" in text
    assert "at least 200 optimizer steps are taken (more epochs with few labels) unless --fixed-epochs" in " ".join(
        _help("compare").split())


@pytest.mark.parametrize("command", ["demo", "run", "compare"])
def test_the_dataset_option_documents_every_form_the_loader_accepts(command) -> None:
    text = " ".join(_help(command).replace("│", " ").split())
    for form in ("'digits'", "'imagefolder:/folder[?size=28&channels=1]'", "'manifest:/labels.csv[?size=28&channels=1]'",
                 "'mnist:/folder[?limit=N][&test=t10k]'"):
        assert form in text, (command, form)
    assert "channels: 1 grey or 3 RGB" in text and "test=t10k: test on the 10,000 official test images" in text


@pytest.mark.parametrize("command", ["run", "status", "export", "report", "compare", "watch", "resume"])
def test_the_database_option_names_the_files_database_setting(command) -> None:
    """'[database]' is rich markup unless escaped: it used to vanish ("the campaign file's  url")."""
    text = " ".join(_help(command).replace("│", " ").split())
    assert "the campaign file's [database] url (an experiment file's database_url)" in text, command
    assert "activelabel.db next to the campaign (or experiment) file" in text
