"""A campaign on a folder of unlabeled PNG/JPEG files, labeled through a real Label Studio.

Nothing is simulated: the campaign knows no label but the label set. The "annotators" are this
test answering through Label Studio's API (as the web UI does): first the evaluation batch,
then the cold-start batch, then two active rounds; the export must hold exactly their answers.
"""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

import pytest

from activelabel.campaign import campaign_summaries, prepare_campaign
from activelabel.campaign.export import export_labels
from activelabel.campaign.file import load_campaign_file
from activelabel.flows import campaign_flow, sync_flow
from activelabel.storage import open_engine
from tests_support_campaignfile import use_label_studio, write_campaign_file
from tests_support_lstasks import answer, tasks_of_round
from tests_support_owndata import LABELS, write_unlabeled_pool
from tests_support_lsserver import delete_projects_titled

pytestmark = pytest.mark.labelstudio


def test_unlabeled_folder_through_label_studio_end_to_end(ls_server, ls_client, tmp_path, monkeypatch) -> None:
    db_url = use_label_studio(monkeypatch, ls_server, tmp_path)
    truth = write_unlabeled_pool(tmp_path / "images", count=60)
    name = f"own-{uuid.uuid4().hex[:8]}"
    path = write_campaign_file(tmp_path / "campaign.toml", name, settings={
        "campaign.batch_size": 6, "data.evaluation_size": 10, "campaign.epochs": 2, "campaign.mc_samples": 3,
        "campaign.device": "cpu"})
    config, _ = load_campaign_file(path)
    assert config.annotator == "labelstudio" and config.truth is None
    engine = open_engine(db_url)
    prepare_campaign(engine, config)

    given: dict[str, str] = {}
    try:
        for index in (1, 2, 3, 4):
            summaries = campaign_flow(name, index)
            assert summaries[-1].status == "waiting_for_labels"
            sent = tasks_of_round(engine, index)
            assert len(sent) == (10 if index == 1 else 6)
            for task_id in sent.values():  # random rounds have no model: no uncertainty to show
                data = ls_client.tasks.get(int(task_id)).data
                assert (data["uncertainty"] is None) == (index <= 2), (index, data)
                assert (data["confidence"] is None) == (index <= 2), (index, data)  # not "0 % sure"
            for n, (uri, task_id) in enumerate(sorted(sent.items())):
                # People are not an oracle: one answer per round disagrees with the "truth".
                label = truth[uri] if n else LABELS[(LABELS.index(truth[uri]) + 1) % len(LABELS)]
                answer(ls_client, task_id, label)
                given[uri] = label
            result = sync_flow(name)
            assert result.pending == 0
        campaign_flow(name, 4)  # everything answered: nothing more to do

        kinds = [s.kind for s in campaign_summaries(engine, name)]
        assert kinds == ["evaluation", "cold_start", "active", "active"]
        summaries = campaign_summaries(engine, name)
        assert summaries[2].labeled == 6 and summaries[3].labeled == 12
        assert summaries[2].test_accuracy is not None  # measured on the annotators' evaluation set

        count = export_labels(engine, name, tmp_path / "labels.csv")
        rows = list(csv.DictReader((tmp_path / "labels.csv").open()))
        root = (tmp_path / "images").resolve()
        exported = {Path(r["path"]).relative_to(root).as_posix(): r["label"] for r in rows}
        assert count.rows == len(given) == 28
        assert exported == given
        assert {r["round"] for r in rows} == {"1", "2", "3", "4"}
    finally:
        delete_projects_titled(ls_client, config.labelstudio_project)
