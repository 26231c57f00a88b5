"""Commands that activelabel suggests for a campaign opened with a password-carrying
``--database-url`` run as printed: the URL in the hint has no password (never a masked ``***``,
which would be used literally), the hint says the password comes from
$ACTIVELABEL_DATABASE_PASSWORD, and a URL whose password is the mask itself is refused with
one clear line. Real PostgreSQL (a throwaway schema), real subprocesses."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url

from activelabel.storage import Round, RoundStatus, open_engine, session_scope

from test_cli import one_line_error, run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from tests_support_campaignfile import write_campaign_file  # noqa: E402
from tests_support_postgres import throwaway_schema_url  # noqa: E402

DEMO = ("demo", "--campaign", "pwhint", "--rounds", "1", "--batch-size", "8", "--initial-labeled", "16",
        "--mc-samples", "3", "--epochs", "2", "--fixed-epochs", "--strategy", "bald")


def _round_one(url: str) -> RoundStatus:
    engine = open_engine(url)
    try:
        with session_scope(engine) as session:
            return session.scalar(select(Round.status).where(Round.index == 1))
    finally:
        engine.dispose()


def test_the_resume_hint_of_a_password_url_runs_as_printed_and_a_masked_url_is_refused(tmp_path):
    with throwaway_schema_url("al_hints") as url:
        password = make_url(url).password
        assert password, "the test server's URL carries its password"
        crashed = run_cli(*DEMO, "--database-url", url, cwd=tmp_path, env={"ACTIVELABEL_CRASH_AT": "score"})
        assert crashed.returncode != 0 and _round_one(url) == RoundStatus.scoring

        status = run_cli("status", "pwhint", "--database-url", url, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        printed = status.stdout + status.stderr
        assert "***" not in printed.split("Samples:")[-1] and password not in printed
        hint = re.search(r"`(activelabel resume [^`]*)` \(with the database password in "
                         r"\$ACTIVELABEL_DATABASE_PASSWORD\)", printed.replace("\n", ""))
        assert hint, printed
        words = shlex.split(hint.group(1))
        hinted_url = words[words.index("--database-url") + 1]
        assert make_url(hinted_url).password is None and make_url(hinted_url).username == make_url(url).username

        # A pasted masked URL: refused up front, even with the real password in the environment.
        masked = make_url(url).set(password="***").render_as_string(hide_password=False)
        refused = one_line_error(run_cli("status", "pwhint", "--database-url", masked, cwd=tmp_path,
                                         env={"ACTIVELABEL_DATABASE_PASSWORD": password}))
        assert "masked URL" in refused and "ACTIVELABEL_DATABASE_PASSWORD" in refused and password not in refused

        # The hint as printed, with the password where it says: the round completes.
        other = tmp_path / "elsewhere"
        other.mkdir()
        resumed = run_cli(*words[1:], cwd=other, env={"ACTIVELABEL_DATABASE_PASSWORD": password})
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        assert "Resuming round 1" in resumed.stderr and password not in resumed.stdout + resumed.stderr
        assert _round_one(url) == RoundStatus.complete


def test_a_campaign_file_that_names_its_database_needs_no_database_url_in_hints(tmp_path, monkeypatch):
    """`--database-url` adds nothing when it names the file's own `[database] url` (the
    password aside): the hint leaves it out. Another database stays, without its password."""
    from activelabel.cli import _command_ref

    monkeypatch.delenv("ACTIVELABEL_DATABASE_PASSWORD", raising=False)
    file = tmp_path / "campaign.toml"
    write_campaign_file(file, "c", settings={"database.url": "postgresql+psycopg://al@db:5432/al"})
    assert _command_ref("c", file, "postgresql+psycopg://al:secret@db:5432/al") == str(file.resolve())
    other = _command_ref("c", file, "postgresql+psycopg://al:secret@db:5432/other")
    assert other == f"{file.resolve()} --database-url postgresql+psycopg://al@db:5432/other"
