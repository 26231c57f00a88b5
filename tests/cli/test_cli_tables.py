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
    assert rows == {"1": ["evaluation", "", ""], "2": ["cold start", "", ""], "3": ["active", "1,200", "0.9120"]}


def test_the_export_line_counts_labeled_samples_and_copies_apart() -> None:
    from activelabel.campaign.export import ExportedLabels

    assert ExportedLabels(161, 1).describe() == "160 labeled samples (+1 copy labeled with its original)"
    assert ExportedLabels(12, 0).describe() == "12 labeled samples"
    assert ExportedLabels(1, 0).describe() == "1 labeled sample"


def test_compares_closing_table_names_labels_trained_on_and_shows_four_decimals() -> None:
    """Trial 14 F1/F2: the column counts the labels the last model trained on (as status and the
    report name it), and a mean of 0.899721 must not read 0.900 beside the report's strict >= target."""
    from rich.console import Console

    from activelabel.cli_compare import final_table

    console = Console(width=200, record=True)
    console.print(final_table("Experiment e", [("random", 2, 80, 0.899721, 0.0158), ("bald", 2, None, None, None),
                                               ("entropy", 1, 80, 0.91, 0.0)]))
    lines = console.export_text().splitlines()
    header = next(line for line in lines if "strategy" in line)
    assert [c.strip() for c in header.split("┃")][1:5] == ["strategy", "seeds", "trained on",
                                                            "test accuracy (mean ± std)"]
    rows = [[c.strip() for c in line.split("│")][1:5] for line in lines if any(s in line for s in ("random", "bald", "entropy"))]
    # one seed: the mean alone, not "± 0.0000" as if a spread were measured (trial 18 F8)
    assert rows == [["random", "2", "80", "0.8997 ± 0.0158"], ["bald", "2", "", ""], ["entropy", "1", "80", "0.9100"]]
