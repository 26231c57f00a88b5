"""The hint a run prints when its round waits for labels names the campaign the way that works
from any folder: the campaign file's absolute path (its database sits next to it). Real CLI
processes, a real Label Studio; round 1 of a folder campaign sends the evaluation set (no training)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests_support_campaignfile import write_campaign_file
from tests_support_owndata import write_unlabeled_pool
from tests_support_lsserver import delete_projects_titled

pytestmark = pytest.mark.labelstudio

EXE = [sys.executable, "-m", "activelabel.cli"]


def test_the_waiting_hint_names_the_campaign_file_that_works_from_anywhere(ls_server, ls_client, tmp_path) -> None:
    name = f"hint-{uuid.uuid4().hex[:8]}"
    folder, elsewhere, third = tmp_path / "camp", tmp_path / "elsewhere", tmp_path / "third"
    elsewhere.mkdir(), third.mkdir()
    write_unlabeled_pool(folder / "images", count=20)
    write_campaign_file(folder / "campaign.toml", name, settings={
        "campaign.batch_size": 5, "data.evaluation_size": 4, "campaign.rounds": 1})
    env = {**os.environ, "LABEL_STUDIO_URL": ls_server.url, "LABEL_STUDIO_API_KEY": ls_server.api_key,
           "PREFECT_HOME": str(tmp_path / "prefect"), "COLUMNS": "400"}
    env.pop("ACTIVELABEL_DATABASE_URL", None)

    def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run([*EXE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)

    absolute = (folder / "campaign.toml").resolve()
    try:
        run = cli("run", "../camp/campaign.toml", cwd=elsewhere)
        assert run.returncode == 0, run.stderr
        # The log line may fold anywhere, even between a long path and its closing backtick.
        hint = "".join(run.stderr.split())
        assert "".join((f"Round 1 waits for labels from the annotators; run `activelabel sync {absolute}` or "
                        f"`activelabel watch {absolute}` to continue").split()) in hint, run.stderr
        # the hinted command works from yet another folder (the database is found next to the file)
        synced = cli("sync", str(absolute), cwd=third)
        assert synced.returncode == 0, synced.stderr
        assert synced.stdout.startswith("0 new answers, 0 edited, 0 deleted in Label Studio; 4 samples")
        assert not (third / "activelabel.db").exists() and (folder / "activelabel.db").exists()
    finally:
        delete_projects_titled(ls_client, f"activelabel {name}")
