"""Messages that name what to do next, and errors that name the file or setting: the exact
words a user reads (real CLI processes, real files, real SQLite)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from activelabel.cli import _command_ref
from activelabel.flows.round import follow_up

EXE = [sys.executable, "-m", "activelabel.cli"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "400"}
    env.pop("ACTIVELABEL_DATABASE_URL", None)
    return subprocess.run([*EXE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_follow_up_commands_name_the_file_absolute_or_the_name_with_its_database(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my camp").mkdir()
    assert _command_ref("own", "my camp/c.toml", None) == f"'{tmp_path / 'my camp' / 'c.toml'}'"
    assert _command_ref("own", None, None) == "own"
    assert _command_ref("own", None, "sqlite:///x.db") == f"own --database-url sqlite:///{tmp_path / 'x.db'}"
    assert (_command_ref("own", None, "postgresql+psycopg://al:secret@db/al")
            == "own --database-url 'postgresql+psycopg://al:***@db/al'")
    assert follow_up("sync", "own", None) == "`activelabel sync own`"
    assert follow_up("resume", "own", "/a/c.toml") == "`activelabel resume /a/c.toml`"
