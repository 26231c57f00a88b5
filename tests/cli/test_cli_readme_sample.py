"""The README's sample of `activelabel demo` output is what a real run prints: the warning line
as rich's log handler writes it (time, level, message wrapped under itself) at 120 columns."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
TIME = re.compile(r"^\[\d\d/\d\d/\d\d \d\d:\d\d:\d\d\] ")  # rich's default "[%x %X] ", C locale


def _sample_warning() -> list[str]:
    """The README sample's WARNING line and its continuation, the time masked."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if "WARNING  The seed labels of campaign" in line)
    return [TIME.sub("[TIME] ", line.rstrip()) for line in lines[start:start + 2]]


def test_the_readme_warning_is_the_line_a_demo_prints(tmp_path):
    sample = _sample_warning()
    assert sample[0].startswith("[TIME] WARNING  The seed labels")  # the time rich prints is in the sample
    result = subprocess.run(
        [sys.executable, "-m", "activelabel.cli", "demo", "--rounds", "1", "--mc-samples", "2", "--epochs", "1",
         "--database-url", f"sqlite:///{tmp_path / 'al.db'}"],
        cwd=tmp_path, env={**os.environ, "COLUMNS": "120", "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [TIME.sub("[TIME] ", line.rstrip()) for line in result.stderr.splitlines()]
    start = next(i for i, line in enumerate(printed) if "WARNING  The seed labels" in line)
    assert printed[start:start + 2] == sample
