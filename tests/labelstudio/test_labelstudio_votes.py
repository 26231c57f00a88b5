"""annotations_per_task counts annotators, not answers, against a real Label Studio (trial7
items 1, 2 and 11): one annotator answering a task twice is one vote; every "labeled" count
(status, the campaign list, the report's Data line, the export) uses the campaign's
annotations_per_task; status says what holds a waiting round.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from typer.testing import CliRunner

from activelabel.campaign import CampaignConfig, prepare_campaign
from activelabel.campaign.export import labeled_rows
from activelabel.campaign.summary import campaign_overviews, data_counts, round_progress, short_of_answers
from activelabel.cli import app
from activelabel.flows import campaign_flow, sync_flow
from activelabel.pipeline.datasets import load_dataset
from activelabel.report.data import load_campaign
from activelabel.storage import Sample, open_engine, session_scope
from activelabel.storage.repository import resolved_labels

from tests_support_lsserver import delete_projects_titled, project_titled

pytestmark = pytest.mark.labelstudio

DIGITS = load_dataset("digits")
TRUTH = {uri: DIGITS.labels[DIGITS.targets[i]] for i, uri in enumerate(DIGITS.uris)}
INITIAL = 12


def _answer(ls_client, task, label: str, user_id: int | None = None) -> None:
    result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
    kwargs = {"completed_by": user_id} if user_id is not None else {}
    ls_client.annotations.create(id=task.id, result=result, **kwargs)


@pytest.fixture
def two_per_task(ls_server, ls_client, tmp_path, monkeypatch):
    """A digits campaign in Label Studio asking 2 answers per task; its project is deleted after."""
    monkeypatch.setenv("LABEL_STUDIO_URL", ls_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_server.api_key)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    url = f"sqlite:///{tmp_path / 'votes.db'}"
    monkeypatch.setenv("ACTIVELABEL_DATABASE_URL", url)
    config = CampaignConfig(
        name=f"votes-{uuid.uuid4().hex[:10]}", annotator="labelstudio", strategy="entropy", rounds=1,
        batch_size=3, initial_labeled=INITIAL, mc_samples=3, epochs=2, device="cpu", annotations_per_task=2,
    )
    engine = open_engine(url)
    prepare_campaign(engine, config)
    second = ls_client.users.create(
        username=f"votes-{uuid.uuid4().hex[:6]}", email=f"votes-{uuid.uuid4().hex[:6]}@example.com",
        password="annotator-pw-123",
    )
    yield config, engine, second
    delete_projects_titled(ls_client, config.labelstudio_project)


def _labeled_everywhere(engine, name: str) -> dict[str, int]:
    """The "labeled" count as each place shows it."""
    cli_status = CliRunner().invoke(app, ["status", name], env={"COLUMNS": "250"}, terminal_width=250)
    assert cli_status.exit_code == 0, cli_status.output
    cli_list = CliRunner().invoke(app, ["status"], env={"COLUMNS": "250"}, terminal_width=250)
    row = next(line for line in cli_list.output.splitlines() if name in line)
    data_line = next(line for line in cli_status.output.splitlines() if line.startswith("Samples:"))
    return {
        "status": int(data_line.rsplit("·", 1)[1].split()[0]),
        "list": int(row.split("│")[-2].strip()),
        "overview": next(c.labeled for c in campaign_overviews(engine) if c.name == name),
        "report data line": data_counts(engine, name).labeled,
        "export": len(labeled_rows(engine, name)),
    }, cli_status.output


def test_one_annotator_twice_is_one_vote_and_every_count_agrees(two_per_task, ls_client, caplog):
    config, engine, second = two_per_task
    assert campaign_flow(config.name, 1)[0].status == "waiting_for_labels"
    project = project_titled(ls_client, config.labelstudio_project)
    tasks = sorted(ls_client.tasks.list(project=project.id, fields="all"), key=lambda t: t.id)
    with session_scope(engine) as session:
        uri = dict(session.query(Sample.id, Sample.uri).all())
    twice, rejected, once = tasks
    truth = {t.id: TRUTH[uri[t.data["sample_id"]]] for t in tasks}

    # The admin answers one task twice (the UI lets a user add a second annotation); a second
    # task gets the admin's label outside the label set plus the second user's; the third only
    # the second user's.
    _answer(ls_client, twice, truth[twice.id])
    _answer(ls_client, twice, truth[twice.id])
    _answer(ls_client, rejected, "zebra")
    _answer(ls_client, rejected, truth[rejected.id], user_id=second.id)
    _answer(ls_client, once, truth[once.id], user_id=second.id)
    result = sync_flow(config.name)
    assert (result.new_labels, result.rejected, result.pending) == (5, 1, 3)

    with session_scope(engine) as session:
        campaign_id = session.query(Sample.campaign_id).first()[0]
        assert twice.data["sample_id"] not in resolved_labels(session, campaign_id, 2)
    progress = round_progress(engine, config.name)[-1]
    assert (progress.status, progress.annotated, progress.resolved, progress.rejected) == (
        "waiting_for_labels", 3, 0, 1)
    counts, output = _labeled_everywhere(engine, config.name)
    # Before the fix: the data line and the list said 15 (any one accepted answer counted).
    assert counts == dict.fromkeys(counts, INITIAL), counts
    # The report's class balance reads the same resolved labels: nothing resolved yet.
    picked = {p.sample_id: p.label for p in load_campaign(engine, campaign_id).picked}
    assert picked == {t.data["sample_id"]: None for t in tasks}

    short = short_of_answers(engine, config.name)
    assert (short.index, short.needed, short.selected, short.resolved, short.to_complete,
            short.outstanding, short.rejected, short.partial) == (1, 2, 3, 0, 3, 3, 1, 2)
    expected = (
        "Round 1 waits: 0 of 3 samples resolved, 3 needed; 3 samples lack 2 accepted answers from "
        "different annotators: 1 with a rejected label (not in the label set), 2 with an accepted answer "
        "from fewer than 2 annotators. To go on: correct the rejected labels in Label Studio, ask another "
        "annotator to answer (one annotator answering twice counts once), or set min_new_labels to complete "
        "the round with fewer labels."
    )
    assert short.describe() == expected
    assert expected in " ".join(output.split())

    # The second user answers the task the admin answered twice: now two annotators.
    _answer(ls_client, twice, truth[twice.id], user_id=second.id)
    result = sync_flow(config.name)
    assert (result.new_labels, result.pending) == (1, 2)
    with session_scope(engine) as session:
        label = resolved_labels(session, campaign_id, 2)[twice.data["sample_id"]]
    assert (label.label, label.votes, label.agreement) == (truth[twice.id], 2, 1.0)
    counts, _ = _labeled_everywhere(engine, config.name)
    assert counts == dict.fromkeys(counts, INITIAL + 1), counts
    picked = {p.sample_id: p.label for p in load_campaign(engine, campaign_id).picked}
    assert picked == {t.data["sample_id"]: truth[t.id] if t is twice else None for t in tasks}
    short = short_of_answers(engine, config.name)
    assert (short.resolved, short.outstanding, short.rejected, short.partial) == (1, 2, 1, 1)

    # The admin answers the task the second user answered, with another label: a 1-1 tie, resolved
    # as the first answer (the second user's), and sync warns about the split decision (trial 12 F3).
    other = "0" if truth[once.id] != "0" else "1"
    _answer(ls_client, once, other)
    with caplog.at_level(logging.WARNING, logger="activelabel.campaign.sync"):
        result = sync_flow(config.name)
    assert (result.new_labels, result.pending) == (1, 1)
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "activelabel.campaign.sync" and "split decision" in r.getMessage()]
    assert warnings == [
        f"Round 1: 1 sample resolved by a split decision (no label has more than half of the answers; a tie goes "
        f"to the first answer's label): {uri[once.data['sample_id']]} (task {once.id}): {truth[once.id]}, {other} "
        f"-> {truth[once.id]}. Have another annotator review it in Label Studio: an edit there is followed by the "
        f"next sync. `activelabel status {config.name} --round 1` lists it."]
