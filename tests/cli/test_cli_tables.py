"""The words and figures of the CLI's tables and lines, on hand-made values (no campaign run)."""

from __future__ import annotations

from activelabel.campaign.summary import RoundSummary


def _summary(index: int, kind: str, labeled: int | None, accuracy: float | None) -> RoundSummary:
    return RoundSummary(index=index, status="complete", labeled=labeled, test_accuracy=accuracy, test_nll=None,
                        test_ece=None, mean_selected_score=None, seconds=1.0, model_version=None, kind=kind)


def test_the_run_table_says_how_many_labels_each_model_trained_on(capsys) -> None:
    from activelabel.cli import _print_rounds

    _print_rounds("own", [_summary(1, "evaluation", 0, None), _summary(2, "cold_start", 0, None),
                          _summary(3, "active", 1200, 0.912)])
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if "round" in line and "kind" in line)
    assert [c.strip() for c in header.split("┃")][1:4] == ["round", "kind", "trained on"]
    rows = {cells[1]: cells[2:5] for cells in ([c.strip() for c in line.split("│")] for line in lines
                                               if "complete" in line)}
    # No model in the evaluation and cold-start rounds: nothing trained on, not "0 labeled".
    assert rows == {"1": ["evaluation", "", ""], "2": ["cold start", "", ""], "3": ["active", "1,200", "0.912"]}


def test_the_export_line_counts_labeled_samples_and_copies_apart() -> None:
    from activelabel.campaign.export import ExportedLabels

    assert ExportedLabels(161, 1).describe() == "160 labeled samples (+1 copy labeled with its original)"
    assert ExportedLabels(12, 0).describe() == "12 labeled samples"
    assert ExportedLabels(1, 0).describe() == "1 labeled sample"
