"""Read-only commands start without torch: `status`, `db`, `strategies`, `export --to` and the
report's pieces (its sample gallery reads PNGs through the campaign's image store) import no
torch, which costs 1.5-5 s of every such command's start-up (bench/startup.py, BENCHMARKS.md).

Each command runs in a fresh interpreter, in process (``app(..., standalone_mode=False)``), so
the test can read ``sys.modules`` after it; what it printed is checked too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# Runs the commands given as JSON argv lists, then prints a JSON line: what each returned was
# printed by the command itself; the last line says which heavy modules got imported.
RUNNER = """
import json, sys
from activelabel.cli import app
for args in json.loads(sys.argv[1]):
    try:
        app(args, standalone_mode=False)
    except SystemExit as exit:
        assert not exit.code, (args, exit.code)
print(json.dumps(sorted(m for m in ("torch", "prefect") if m in sys.modules)))
"""


def _run(commands: list[list[str]], cwd: Path, extra: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", RUNNER + extra, json.dumps(commands)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _heavy(result: subprocess.CompletedProcess) -> list[str]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_status_db_and_strategies_import_no_torch(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = _run([["db", "upgrade", "--database-url", url], ["db", "current", "--database-url", url],
                   ["status", "--database-url", url], ["strategies"], ["report", "--help"],
                   ["export", "--help"]], tmp_path)
    assert _heavy(result) == []
    assert "(up to date)" in result.stdout  # db current ran on the upgraded schema
    assert "bald" in result.stdout  # strategies listed them


def test_the_report_gallery_reads_sample_pngs_without_torch(tmp_path) -> None:
    # What report.build._gallery does for each picked sample, on the bundled digits.
    gallery = """
from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import campaign_data
import activelabel.report, activelabel.campaign.uncertainty_report, activelabel.campaign.export
data = campaign_data(CampaignConfig.from_dict({"name": "startup", "dataset": "digits"}))
png = data.store.png(data.pool[0])
assert png[:8] == b"\\x89PNG\\r\\n\\x1a\\n", png[:8]
print(json.dumps(sorted(m for m in ("torch", "prefect") if m in sys.modules)))
"""
    result = _run([], tmp_path, gallery)
    assert _heavy(result) == []


def test_training_still_gets_torch_batches(tmp_path) -> None:
    # The store imports torch where it makes batches: a pass over the pool still yields tensors.
    code = """
import sys
import numpy as np
from activelabel.pipeline.store import ArrayStore
assert "torch" not in sys.modules
store = ArrayStore(np.zeros((3, 1, 4, 4), dtype=np.float32), ["a", "b", "c"])
batch = next(store.batches(["a", "x", "c"], batch_size=3))
print(type(batch.images).__module__, tuple(batch.images.shape), batch.positions.tolist(), len(batch.failures))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["torch", "(2,", "1,", "4,", "4)", "[0,", "2]", "1"]
