"""What ``activelabel status`` says about a round held by missing answers (trial7 item 11)."""

from __future__ import annotations

from activelabel.campaign.summary import ShortOfAnswers


def test_nothing_stored_holds_the_round_says_nothing() -> None:
    # Annotators simply have not answered yet: no hint.
    assert ShortOfAnswers(2, 2, 20, 4, 20, 16, 0, 0).describe() is None


def test_one_annotator_per_task_with_a_rejected_label() -> None:
    assert ShortOfAnswers(3, 1, 10, 9, 10, 1, 1, 0).describe() == (
        "Round 3 waits: 9 of 10 samples resolved, 10 needed; 1 sample lacks an accepted answer: 1 with a rejected label (not in the label set). To go on: correct the rejected labels in "
        "Label Studio, or set min_new_labels to complete the round with fewer labels."
    )


def test_an_evaluation_round_is_not_offered_min_new_labels() -> None:
    text = ShortOfAnswers(1, 3, 30, 28, 30, 2, 0, 2, evaluation=True).describe()
    assert text == (
        "Round 1 waits: 28 of 30 samples resolved, 30 needed (an evaluation round needs all its samples labeled); "
        "2 samples lack 3 accepted answers from different "
        "annotators: 2 with some accepted answers from fewer than 3 annotators. To go on: ask another annotator "
        "to answer (one annotator answering twice counts once)."
    )
