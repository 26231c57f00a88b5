"""Push against a real Label Studio: tasks, predictions, idempotency, the project, /next order."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from activelabel.annotation.labelstudio import LabelStudioProjectError, build_label_config, config_labels

pytestmark = pytest.mark.labelstudio

CONFIDENCES = [0.8, 0.2, 0.95, 0.5, 0.05]


def _project_tasks(ls_client, project_id: int) -> list:
    return sorted(ls_client.tasks.list(project=project_id, fields="all"), key=lambda t: t.id)


def test_push_creates_one_task_with_one_prediction_per_sample(make_annotator, make_tasks, ls_client):
    annotator = make_annotator(model_version="r1-abc")
    requests = make_tasks(CONFIDENCES)

    ids = annotator.push(requests)

    tasks = _project_tasks(ls_client, annotator.project_id)
    assert len(tasks) == 5
    by_sample = {t.data["sample_id"]: t for t in tasks}
    assert set(by_sample) == {r.sample_id for r in requests}
    assert ids == {r.sample_id: str(by_sample[r.sample_id].id) for r in requests}
    for r in requests:
        task = by_sample[r.sample_id]
        assert task.data["uncertainty"] == pytest.approx(r.score)
        assert task.data["confidence"] == pytest.approx(r.confidence)
        assert task.data["rank"] == r.rank
        assert task.data["uri"] == r.uri
        assert task.data["predicted_label"] == r.predicted_label
        assert task.data["image"].startswith("data:image/png;base64,")
        assert len(task.predictions) == 1
        prediction = task.predictions[0]
        # The score orders the serving (strategy rank / n); the confidence stays in data and result.
        place = sorted(CONFIDENCES).index(r.confidence)
        assert prediction.score == pytest.approx(place / 5)
        assert task.data["order"] == place + 1
        assert prediction.result[0]["score"] == pytest.approx(r.confidence)
        assert prediction.model_version == "r1-abc"
        assert prediction.result[0]["value"]["choices"] == [r.predicted_label]
    project = ls_client.projects.get(id=annotator.project_id)
    assert project.model_version == "r1-abc"
    assert project.sampling == "Uncertainty sampling"


def test_push_again_and_a_superset_imports_only_missing(make_annotator, make_tasks, ls_client):
    annotator = make_annotator()
    first = make_tasks(CONFIDENCES)
    ids = annotator.push(first)

    assert annotator.push(first) == ids
    assert len(_project_tasks(ls_client, annotator.project_id)) == 5

    superset = make_tasks(CONFIDENCES + [0.6, 0.7])
    more = annotator.push(superset)
    tasks = _project_tasks(ls_client, annotator.project_id)
    assert len(tasks) == 7
    assert {k: more[k] for k in ids} == ids  # old samples keep their tasks
    assert more == {t.data["sample_id"]: str(t.id) for t in tasks}
    assert all(len(t.predictions) == 1 for t in tasks)


def test_push_pages_through_the_project_and_imports_in_chunks(make_annotator, make_tasks, ls_client, monkeypatch):
    from activelabel.annotation import labelstudio

    monkeypatch.setattr(labelstudio, "PAGE_SIZE", 4)
    monkeypatch.setattr(labelstudio, "IMPORT_CHUNK", 3)
    monkeypatch.setattr(labelstudio, "LOOKUP_CHUNK", 4)
    annotator = make_annotator()
    confidences = [round(0.05 * i, 2) for i in range(1, 12)]
    ids = annotator.push(make_tasks(confidences))

    assert annotator.push(make_tasks(confidences)) == ids
    tasks = _project_tasks(ls_client, annotator.project_id)
    assert len(tasks) == 11 == len(set(ids.values()))
    assert ids == {t.data["sample_id"]: str(t.id) for t in tasks}


def test_a_new_annotator_finds_the_project_and_its_tasks(make_annotator, make_tasks, ls_client):
    """A crash between import and storing task ids: a fresh process reconciles, imports nothing."""
    ids = make_annotator().push(make_tasks(CONFIDENCES))
    again = make_annotator()

    assert again.push(make_tasks(CONFIDENCES)) == ids
    assert len(_project_tasks(ls_client, again.project_id)) == 5


def test_a_new_model_version_adds_its_prediction_to_existing_tasks(make_annotator, make_tasks, ls_client):
    annotator = make_annotator()
    requests = make_tasks(CONFIDENCES)
    annotator.push(requests, model_version="r1")
    annotator.push(requests, model_version="r2")
    annotator.push(requests, model_version="r2")

    tasks = _project_tasks(ls_client, annotator.project_id)
    assert len(tasks) == 5
    assert all(sorted(p.model_version for p in t.predictions) == ["r1", "r2"] for t in tasks)
    assert ls_client.projects.get(id=annotator.project_id).model_version == "r2"


def test_tasks_of_a_round_without_a_model_carry_no_confidence(make_annotator, make_tasks, ls_client):
    """Evaluation and cold-start picks (no model: no predicted label, a stored placeholder
    confidence 0.0) show null uncertainty and confidence in Label Studio, not "0 % sure"
    (trial F7a); a task with a model's guess keeps its confidence."""
    annotator = make_annotator()
    random_picks = [dataclasses.replace(r, predicted_label="", confidence=0.0, score=0.37)
                    for r in make_tasks([0.5, 0.5])]
    guessed = make_tasks([0.8], first_id=300)
    annotator.push(random_picks + guessed)
    by_sample = {t.data["sample_id"]: t for t in _project_tasks(ls_client, annotator.project_id)}
    for r in random_picks:
        data = by_sample[r.sample_id].data
        assert data["confidence"] is None and data["uncertainty"] is None and data["predicted_label"] == ""
        assert data["rank"] == r.rank  # the 0-based rank is kept
    assert by_sample[300].data["confidence"] == pytest.approx(0.8)
    assert by_sample[300].data["uncertainty"] == pytest.approx(0.2)


def test_next_serves_the_least_confident_task_first(ls_server, make_annotator, make_tasks, ls_client, choice_result):
    annotator = make_annotator()
    requests = make_tasks(CONFIDENCES)
    ids = annotator.push(requests)
    served, served_ids = [], []
    with httpx.Client(base_url=ls_server.url, headers={"Authorization": f"Token {ls_server.api_key}"}) as http:
        for _ in range(3):
            response = http.get(f"/api/projects/{annotator.project_id}/next")
            assert response.status_code == 200, response.text
            task = response.json()
            served.append(task["data"]["confidence"])
            served_ids.append(str(task["id"]))
            ls_client.annotations.create(id=task["id"], result=choice_result("cat"))
    assert served == [0.05, 0.2, 0.5]
    by_confidence = {r.confidence: ids[r.sample_id] for r in requests}
    assert served_ids == [by_confidence[0.05], by_confidence[0.2], by_confidence[0.5]]


def test_project_has_the_label_set_escaped(make_annotator, ls_client):
    labels = ["cat", 'say "hi" & <bye>', "d'og"]
    annotator = make_annotator(labels=labels)
    project = ls_client.projects.get(id=annotator.project_id)

    assert config_labels(project.label_config) == labels
    assert config_labels(build_label_config(labels)) == labels
    assert 'choice="single"' in project.label_config


def test_existing_project_with_other_labels_is_refused(make_annotator):
    make_annotator(labels=["cat", "dog"]).ensure_project()

    with pytest.raises(LabelStudioProjectError, match=r"has labels \['cat', 'dog'\]"):
        make_annotator(labels=["cat", "dog", "bird"]).ensure_project()
