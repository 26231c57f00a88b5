"""The commands a labeling lead types: run into Label Studio, status, sync (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests_support_lsserver import delete_projects_titled, project_titled

pytestmark = pytest.mark.labelstudio

EXE = str(Path(sys.executable).with_name("activelabel"))


def test_run_status_and_sync_through_the_cli(ls_server, ls_client, tmp_path):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "LABEL_STUDIO_URL": ls_server.url, "LABEL_STUDIO_API_KEY": ls_server.api_key,
           "PREFECT_HOME": str(tmp_path / "prefect"), "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([EXE, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    try:
        run = cli("run", "--campaign", name, "--annotator", "labelstudio", "--rounds", "1",
                  "--batch-size", "3", "--initial-labeled", "10", "--mc-samples", "3", "--epochs", "2")
        assert run.returncode == 0, run.stderr
        assert "waits for labels" in run.stderr and f"activelabel sync {name}" in run.stderr
        assert ls_server.api_key not in run.stdout + run.stderr

        status = cli("status", name)
        row = next(line for line in status.stdout.splitlines() if "waiting for labels" in line)
        assert [c.strip() for c in row.split("│")[4:8]] == ["3", "3", "0", "0"]  # selected sent annotated resolved

        project = project_titled(ls_client, f"activelabel {name}")
        for task in ls_client.tasks.list(project=project.id, fields="all"):
            ls_client.annotations.create(id=task.id, result=[{
                "from_name": "label", "to_name": "image", "type": "choices",
                "value": {"choices": [task.data["predicted_label"]]},
            }])
        synced = cli("sync", name)
        assert synced.returncode == 0, synced.stderr
        assert "3 new answers, 0 edited" in synced.stdout and "0 samples" in synced.stdout
        again = cli("sync", name)
        assert "0 new answers" in again.stdout
        final = cli("status", name)
        row = next(line for line in final.stdout.splitlines() if "│     1 │" in line)
        assert [c.strip() for c in row.split("│")[2:8]] == ["active", "complete", "3", "3", "3", "3"]
    finally:
        delete_projects_titled(ls_client, f"activelabel {name}")


def test_a_wrong_token_or_missing_settings_stop_before_anything_is_written(ls_server, tmp_path):
    base = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    base.pop("LABEL_STUDIO_API_KEY", None)
    args = [EXE, "run", "--campaign", "nope", "--annotator", "labelstudio", "--rounds", "1"]

    wrong = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                           env={**base, "LABEL_STUDIO_URL": ls_server.url,
                                "LABEL_STUDIO_API_KEY": "wrong-token-value-123"})
    assert wrong.returncode == 1
    errors = [line for line in wrong.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"authentication failed at {ls_server.url}" in errors[0]
    assert "wrong-token-value-123" not in wrong.stderr + wrong.stdout
    assert not (tmp_path / "activelabel.db").exists()

    missing = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             env={**base, "LABEL_STUDIO_URL": ls_server.url})
    assert missing.returncode == 1 and "LABEL_STUDIO_API_KEY is not set" in missing.stderr
    assert not (tmp_path / "activelabel.db").exists()
