"""The real CLI in a subprocess, as a user runs it, and its one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXE = [sys.executable, "-m", "activelabel.cli"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``activelabel ARGS`` run in ``cwd``: wide output, no database URL from the environment."""
    env = {**os.environ, "COLUMNS": "400"}
    env.pop("ACTIVELABEL_DATABASE_URL", None)
    return subprocess.run([*EXE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The single ``error:`` line of a failed command (exit 1, no traceback)."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.stderr, result.stderr
    return lines[0]
