"""The campaign report's agreement section (trial 12, F3): per round the mean agreement and the
split decisions, per annotator how often they matched the resolved label, the split samples; no
section for one annotator per task. The campaign is hand-made (tests_support_agreement), so every
figure is known; the whole page is written, as ``activelabel report`` writes it."""

from __future__ import annotations

from report_tiny import ReportParser

from activelabel.report import write_report
from activelabel.storage import open_engine
from tests_support_agreement import answer_all, team_campaign


def _report(tmp_path, per_task: int) -> tuple[str, ReportParser]:
    engine = open_engine(f"sqlite:///{tmp_path / 'team.db'}")
    ids = team_campaign(engine, per_task=per_task)
    answer_all(engine, "team", ids)
    out = tmp_path / "team.html"
    write_report(engine, "team", out)
    text = out.read_text(encoding="utf-8")
    parser = ReportParser()
    parser.feed(text)
    return text, parser


def test_the_report_shows_agreement_per_round_per_annotator_and_the_split_samples(tmp_path) -> None:
    text, parser = _report(tmp_path, 3)
    assert "<h2>Annotators&#x27; agreement (3 per task)</h2>" in text
    assert parser.tables["agreement-rounds"] == [
        ["round", "resolved", "agreement", "split decisions"],
        ["1", "2", "0.500", "1 (1 evaluation)"],  # (2/3 + 1/3) / 2; img0056 is in the evaluation split
        ["2", "1", "1.000", "0"],  # img0101 has 2 of its 3 answers: not resolved, not counted
    ]
    # alice answered 7, 7, 2 (all the resolved label); bob 7, 1, 2; carol 1, 4, 2
    assert parser.tables["agreement-annotators"] == [
        ["annotator", "answers", "agree with the resolved label", "share"],
        ["alice", "3", "3", "1.000"], ["bob", "3", "2", "0.667"], ["carol", "3", "1", "0.333"],
    ]
    assert parser.tables["split-decisions"] == [
        ["round", "sample", "task", "split", "answers", "resolved", "agreement"],
        ["1", "img0056.png", "2", "evaluation", "7, 1, 4", "7", "0.333"],
    ]
    assert "no label has more than half of the sample's answers" in parser.text


def test_one_annotator_per_task_has_no_agreement_section(tmp_path) -> None:
    text, parser = _report(tmp_path, 1)
    assert 'id="agreement"' not in text and "agreement-rounds" not in parser.tables
    assert "rounds" in parser.tables  # the page is there, without the section
