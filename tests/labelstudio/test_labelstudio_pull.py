"""Pull against a real Label Studio: several annotators, skips, labels outside the label set."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.labelstudio


@pytest.fixture
def second_user(ls_client):
    tag = uuid.uuid4().hex[:8]
    return ls_client.users.create(
        username=f"annotator-{tag}", email=f"annotator-{tag}@example.com", password=f"pw-{tag}-12345",
    )


def test_two_annotators_disagreeing_give_two_answers(
    make_annotator, make_tasks, ls_client, second_user, choice_result
):
    annotator = make_annotator(annotations_per_task=2)
    requests = make_tasks([0.3, 0.6])
    ids = annotator.push(requests)
    disputed, agreed = requests
    admin = ls_client.users.whoami()
    a1 = ls_client.annotations.create(id=int(ids[disputed.sample_id]), result=choice_result("cat"))
    a2 = ls_client.annotations.create(
        id=int(ids[disputed.sample_id]), result=choice_result("dog"), completed_by=second_user.id
    )
    a3 = ls_client.annotations.create(id=int(ids[agreed.sample_id]), result=choice_result("bird"))

    answers = annotator.pull(requests)

    assert sorted((a.sample_id, a.annotator, a.label, a.external_id) for a in answers) == sorted([
        (disputed.sample_id, admin.email, "cat", str(a1.id)),
        (disputed.sample_id, second_user.email, "dog", str(a2.id)),
        (agreed.sample_id, admin.email, "bird", str(a3.id)),
    ])
    assert admin.email != second_user.email
    # A second pull repeats the same answers with the same ids (the caller dedupes by id).
    assert sorted(annotator.pull(requests), key=lambda a: a.external_id) == sorted(
        answers, key=lambda a: a.external_id
    )
    # Only the samples asked about.
    assert {a.sample_id for a in annotator.pull([agreed])} == {agreed.sample_id}


def test_skipped_task_comes_back_as_a_skip_and_unknown_labels_come_back_as_is(
    make_annotator, make_tasks, ls_client, choice_result
):
    annotator = make_annotator()
    requests = make_tasks([0.1, 0.2, 0.3, 0.4, 0.5])
    ids = annotator.push(requests)
    skipped, zebra, both, _unlabeled, empty = (int(ids[r.sample_id]) for r in requests)
    s = ls_client.annotations.create(id=skipped, result=[], was_cancelled=True)
    # A submit with no choice: the classification codec reads an empty result as a skip too.
    e = ls_client.annotations.create(id=empty, result=[])
    z = ls_client.annotations.create(id=zebra, result=choice_result("zebra"))
    two = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["cat", "dog"]}}]
    b = ls_client.annotations.create(id=both, result=two)

    answers = {a.sample_id: a for a in annotator.pull(requests)}

    # A skip is returned (it used to be dropped, trial 16 F2), keyed by its annotation id and
    # marked skipped with no label, so the sync can store it and set the sample aside.
    assert set(answers) == {requests[0].sample_id, requests[1].sample_id, requests[2].sample_id,
                            requests[4].sample_id}
    skip = answers[requests[0].sample_id]
    assert (skip.skipped, skip.label, skip.external_id, skip.mask, skip.error) == (True, "", str(s.id), None, None)
    blank = answers[requests[4].sample_id]
    assert (blank.skipped, blank.label, blank.external_id) == (True, "", str(e.id))
    assert not answers[requests[1].sample_id].skipped and not answers[requests[2].sample_id].skipped
    assert answers[requests[1].sample_id].label == "zebra"
    assert answers[requests[1].sample_id].external_id == str(z.id)
    assert answers[requests[2].sample_id].label == '["cat", "dog"]'
    assert answers[requests[2].sample_id].external_id == str(b.id)


def test_pull_with_nothing_annotated_is_empty(make_annotator, make_tasks):
    annotator = make_annotator()
    requests = make_tasks([0.5, 0.7])
    annotator.push(requests)

    assert annotator.pull(requests) == []
    assert annotator.pull([]) == []
