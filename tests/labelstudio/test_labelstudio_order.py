"""Label Studio serves the strategy's order over every outstanding task, leftovers of earlier
rounds included, each carrying the current model version's prediction."""

from __future__ import annotations


import httpx
import pytest
from sqlalchemy import select

from activelabel.campaign import steps
from activelabel.storage import Round, RoundStatus, Score, Selection, session_scope

from tests_support_lsserver import project_titled
from tests_support_rounds import run_round

pytestmark = pytest.mark.labelstudio


def choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]


def field(obj, name):
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


@pytest.fixture
def campaign(ls_campaign):
    def make(**overrides):
        settings = dict(strategy="bald", rounds=3, batch_size=4, initial_labeled=12, mc_samples=4, epochs=1,
                        min_new_labels=2)
        return ls_campaign("lso", **{**settings, **overrides})

    return make


def test_leftovers_get_the_current_prediction_and_next_serves_the_strategy_order(
    campaign, ls_client, ls_server
):
    config, engine, campaign_id = campaign()
    run_round(engine, campaign_id, sync=False)
    project = project_titled(ls_client, config.labelstudio_project)
    tasks = sorted(ls_client.tasks.list(project=project.id, fields="all"), key=lambda t: t.id)
    for task in tasks[:2]:
        ls_client.annotations.create(id=task.id, result=choice(task.data["predicted_label"]))
    assert steps.sync_campaign(engine, campaign_id).pending == 2
    leftovers = {t.data["sample_id"]: t.id for t in tasks[2:]}

    round_2 = run_round(engine, campaign_id, sync=False)
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
