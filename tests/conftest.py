"""Test-wide setup: an isolated Prefect home (ephemeral API, no server) and shared helpers."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

# Helpers shared by several test folders (no package __init__ files in tests/).
sys.path.insert(0, str(Path(__file__).with_name("support")))

# Prefect reads its settings at import time: isolate it before any test imports it.
_PREFECT_HOME = tempfile.mkdtemp(prefix="activelabel-prefect-")
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.pop("PREFECT_API_URL", None) if os.environ.get("ACTIVELABEL_TEST_KEEP_PREFECT_API") is None else None
os.environ.pop("ACTIVELABEL_DATABASE_URL", None)
os.environ.pop("ACTIVELABEL_DATABASE_PASSWORD", None)
