"""Label Studio serves the strategy's order over every outstanding task, leftovers of earlier
rounds included, each carrying the current model version's prediction."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select

from activelabel.campaign import CampaignConfig, prepare_campaign, steps
from activelabel.storage import Round, RoundStatus, Score, Selection, open_engine, session_scope

pytestmark = pytest.mark.labelstudio


def choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


def field(obj, name):
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


@pytest.fixture
def campaign(ls_server, ls_client, tmp_path, monkeypatch):
    monkeypatch.setenv("LABEL_STUDIO_URL", ls_server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", ls_server.api_key)
    made = []

    def make(**overrides):
        settings = dict(
            name=f"lso-{uuid.uuid4().hex[:10]}", annotator="labelstudio", strategy="bald",
            rounds=3, batch_size=4, initial_labeled=12, mc_samples=4, epochs=1, device="cpu",
            min_new_labels=2,
        )
        settings.update(overrides)
        config = CampaignConfig(**settings)
        engine = open_engine(f"sqlite:///{tmp_path / (config.name + '.db')}")
        prepare_campaign(engine, config)
        made.append(config.labelstudio_project)
        return config, engine, steps.campaign_id(engine, config.name)

    yield make
    for project in ls_client.projects.list():
        if project.title in made:
            ls_client.projects.delete(id=project.id)


def run_round(engine, campaign_id: int) -> int:
    round_id = steps.start_round(engine, campaign_id)
    for step in (steps.train_step, steps.score_step, steps.select_step, steps.push_step):
        step(engine, round_id)
    return round_id


def test_leftovers_get_the_current_prediction_and_next_serves_the_strategy_order(
    campaign, ls_client, ls_server
):
    config, engine, campaign_id = campaign()
    run_round(engine, campaign_id)
    project = next(p for p in ls_client.projects.list() if p.title == config.labelstudio_project)
    tasks = sorted(ls_client.tasks.list(project=project.id, fields="all"), key=lambda t: t.id)
    for task in tasks[:2]:
        ls_client.annotations.create(id=task.id, result=choice(task.data["predicted_label"]))
    assert steps.sync_campaign(engine, campaign_id).pending == 2
    leftovers = {t.data["sample_id"]: t.id for t in tasks[2:]}

    round_2 = run_round(engine, campaign_id)
    with session_scope(engine) as session:
        rnd = session.get(Round, round_2)
        assert rnd.status == RoundStatus.waiting_for_labels
        version = rnd.model_version
        scores = {s.sample_id: s for s in session.scalars(
            select(Score).where(Score.round_id == round_2, Score.strategy == "bald"))}
        mine = set(session.scalars(select(Selection.sample_id).where(Selection.round_id == round_2)))
    # Leftovers were scored by round 2 but not selected again.
    assert set(leftovers) <= set(scores) and not set(leftovers) & mine and len(mine) == 4

    outstanding = set(leftovers) | mine
    # The strategy's ranking over every outstanding task: highest BALD score first.
    expected = sorted(outstanding, key=lambda s: (-scores[s].value, s))
    by_sample = {t.data["sample_id"]: t for t in ls_client.tasks.list(project=project.id, fields="all")}
    assert set(outstanding) <= set(by_sample)
    for position, sample_id in enumerate(expected):
        task = by_sample[sample_id]
        current = [p for p in task.predictions if field(p, "model_version") == version]
        assert len(current) == 1, f"sample {sample_id} lacks a {version} prediction"
        assert field(current[0], "score") == pytest.approx(position / len(expected))
        assert task.data["order"] == position + 1
        assert task.data["confidence"] == pytest.approx(scores[sample_id].confidence)
        assert task.data["uncertainty"] == pytest.approx(scores[sample_id].value)

    # Pushing again (a rerun after a crash) adds no second prediction.
    with session_scope(engine) as session:
        session.execute(Round.__table__.update().where(Round.id == round_2).values(status=RoundStatus.pushing))
    steps.push_step(engine, round_2)
    for task in ls_client.tasks.list(project=project.id, fields="all"):
        if task.data["sample_id"] in outstanding:
            assert [field(p, "model_version") for p in task.predictions].count(version) == 1

    served = []
    with httpx.Client(base_url=ls_server.url, headers={"Authorization": f"Token {ls_server.api_key}"},
                      timeout=60) as http:
        for _ in expected:
            response = http.get(f"/api/projects/{project.id}/next")
            assert response.status_code == 200, response.text
            task = response.json()
            served.append(task["data"]["sample_id"])
            ls_client.annotations.create(id=task["id"], result=[], was_cancelled=True)  # skip
    assert served == expected
