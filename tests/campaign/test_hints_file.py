"""Follow-up hints name the campaign file's absolute path when the campaign came from a file
(its database sits next to the file, so a bare name fails from another folder), and a watch
that finds another process running a round waits instead of failing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import func, select

from activelabel.campaign import prepare_campaign
from activelabel.campaign.file import load_campaign_file, template
from activelabel.campaign.hints import follow_up
from activelabel.campaign.uncertainty_report import round_uncertainty
from activelabel.errors import CampaignStateError
from activelabel.storage import Round, open_engine, session_scope
from activelabel.storage.location import default_database_url
from activelabel.storage.lease import campaign_lease
from tests_support_cli import cli, error_line
from tests_support_loglines import WarningLines
from tests_support_owndata import write_manifest, write_unlabeled_pool


def _simulated_campaign(folder: Path, name: str = "hinted") -> Path:
    """A simulated campaign file over 12 own images, prepared in the database next to it."""
    truth = write_unlabeled_pool(folder / "images", count=12)
    write_manifest(folder / "truth.csv", truth, base=folder / "images")
    text = template(name).replace('labels = ["cat", "dog"]',
                                  "labels = " + str(sorted(set(truth.values()))).replace("'", '"'))
    for old, new in {'kind = "labelstudio"': 'kind = "simulated"', "# truth = ...": 'truth = "truth.csv"',
                     "batch_size = 20": "batch_size = 4", "evaluation_size = 100": "evaluation_size = 0",
                     "workers = 2": "workers = 0"}.items():
        assert old in text, old
        text = text.replace(old, new)
    path = folder / "campaign.toml"
    path.write_text(text)
    config, _ = load_campaign_file(path)
    prepare_campaign(open_engine(default_database_url(folder)), config)
    return path


def test_the_shared_helper_prefers_the_reference_over_the_name() -> None:
    assert follow_up("status", "own") == "`activelabel status own`"
    assert follow_up("status", "own", "/abs/campaign.toml") == "`activelabel status /abs/campaign.toml`"


def test_a_missing_round_hint_names_the_reference(tmp_path) -> None:
    path = _simulated_campaign(tmp_path)
    engine = open_engine(default_database_url(tmp_path))
    with pytest.raises(CampaignStateError) as plain:
        round_uncertainty(engine, "hinted", 9)
    assert str(plain.value) == "campaign 'hinted' has no round 9; `activelabel status hinted` lists its rounds"
    with pytest.raises(CampaignStateError) as by_file:
        round_uncertainty(engine, "hinted", 9, str(path.resolve()))
    assert str(by_file.value).endswith(f"`activelabel status {path.resolve()}` lists its rounds")


def test_status_round_from_another_folder_hints_the_files_absolute_path(tmp_path) -> None:
    (tmp_path / "camp").mkdir()
    (tmp_path / "elsewhere").mkdir()
    path = _simulated_campaign(tmp_path / "camp")
    line = error_line(cli("status", "../camp/campaign.toml", "--round", "9", cwd=tmp_path / "elsewhere"))
    assert line == f"error: campaign 'hinted' has no round 9; `activelabel status {path.resolve()}` lists its rounds"



def test_watch_waits_while_another_process_runs_a_round(tmp_path) -> None:
    """The campaign's lease (held here, as a second watch or `run` would hold it) makes the watch
    wait and say so once; it starts no round of its own and does not fail."""
    from activelabel.flows.watch import watch_campaign
    from activelabel.storage.lease import live_holder

    _simulated_campaign(tmp_path)
    engine = open_engine(default_database_url(tmp_path))
    from activelabel.campaign.lookup import campaign_id

    cid = campaign_id(engine, "hinted")
    with campaign_lease(engine, cid, "hinted", 1):
        holder = live_holder(engine, cid)
        assert holder is not None
        lines = WarningLines()
        logging.getLogger("activelabel.flows.watch").addHandler(lines)
        try:
            done = watch_campaign(engine, "hinted", 1, poll_seconds=1.0, deadline_seconds=3.5)
        finally:
            logging.getLogger("activelabel.flows.watch").removeHandler(lines)
    assert done == 0
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Round)) == 0
    busy = [line for line in lines.lines if "is running a round" in line]  # once, not at every check
    assert busy == [f"Campaign 'hinted': {holder} is running a round; this watch waits and checks again every 1 s"]
    assert live_holder(engine, cid) is None  # the lease was released; the watch never took it
