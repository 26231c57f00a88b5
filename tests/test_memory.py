"""The allocator setting that keeps a long scoring pass's memory flat (see BENCHMARKS.md)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHECK = "from activelabel.memory import steady_allocator; print(steady_allocator())"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_threshold_is_fixed_on_glibc_unless_the_user_chose_one() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    applied = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=120)
    assert applied.stdout.strip() == "True", applied.stderr
    chosen = subprocess.run([sys.executable, "-c", CHECK], env={**env, "MALLOC_MMAP_THRESHOLD_": "65536"},
                            capture_output=True, text=True, timeout=120)
    assert chosen.stdout.strip() == "False", chosen.stderr
