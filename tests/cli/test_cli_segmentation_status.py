"""`activelabel status` and `report` of a segmentation campaign show each round's annotator
agreement (mean pairwise IoU of the masks of images painted by two or more) and the class
weights its class-weighted scoring stored; rounds without them show nothing.

The campaign's rows are written by hand, so every figure shown is computed here by hand.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys

import numpy as np

from activelabel.campaign import CampaignConfig
from activelabel.pipeline.masks import mask_to_png_bytes
from activelabel.storage import (
    Annotation,
    AnnotationStatus,
    Campaign,
    Round,
    RoundKind,
    RoundStatus,
    SampleSplit,
    Selection,
    open_engine,
    session_scope,
)
from activelabel.storage.repository import NewSample, add_samples, samples_by_uri

NAME = "segkeep-status"
LABELS = ["background", "disc", "square", "line", "dot"]
SIZE = 16
# Round 1's labeled pixels per class; f = (0.7, 0.1, 0.1, 0.05, 0.05), 1/f = (10/7, 10, 10, 20, 20),
# sum 430/7: w = (1/43, 7/43, 7/43, 14/43, 14/43) = (0.0233, 0.1628, 0.1628, 0.3256, 0.3256).
PIXELS = [700, 100, 100, 50, 50]
WEIGHTS = [1 / 43, 7 / 43, 7 / 43, 14 / 43, 14 / 43]


def _rows(mask_rows: int, cls: int = 1) -> bytes:
    mask = np.zeros((SIZE, SIZE), dtype=np.int64)
    mask[:mask_rows] = cls
    return mask_to_png_bytes(mask)


def _campaign(tmp_path) -> str:
    """Round 1 (class-weighted): image a painted by two annotators, rows 0-7 vs rows 0-3 disc:
    IoU disc 64/128 = 1/2, background 128/192 = 2/3, their mean 7/12; image b painted alike by
    both: 1. Round 1's agreement: (7/12 + 1) / 2 = 19/24. Round 2 (top-q, no weights): one
    mask, no agreement. Round 3 (stored before uncertainty was kept): image d, two masks equal
    except a rejected third answer, which does not count: agreement 1."""
    url = f"sqlite:///{tmp_path / 'seg.db'}"
    engine = open_engine(url)
    config = CampaignConfig(name=NAME, task="segmentation", dataset=f"shapes?n=24&size={SIZE}",
                            aggregation="class_weighted", annotator="labelstudio", device="cpu")
    with session_scope(engine) as session:
        campaign = Campaign(name=NAME, task_kind="segmentation", labels=LABELS, strategy="entropy",
                            dataset=config.dataset, config=config.to_dict())
        session.add(campaign)
        session.flush()
        add_samples(session, campaign.id, [NewSample(u, f"h-{u}", SampleSplit.pool) for u in "abcd"])
        ids = samples_by_uri(session, campaign.id, "abcd")
        uncertainty = [
            {"map": "entropy", "aggregation": "class_weighted", "q": 0.1, "class_weights": WEIGHTS,
             "class_pixels": PIXELS},
            {"map": "entropy", "aggregation": "top_q", "q": 0.1},
            None,
        ]
        picks = {1: "ab", 2: "c", 3: "d"}
        for index, how in enumerate(uncertainty, start=1):
            rnd = Round(campaign_id=campaign.id, index=index, strategy="entropy", kind=RoundKind.active,
                        status=RoundStatus.complete, uncertainty=how, labeled_count=8 * index, timings={})
            session.add(rnd)
            session.flush()
            for rank, uri in enumerate(picks[index]):
                session.add(Selection(campaign_id=campaign.id, round_id=rnd.id, sample_id=ids[uri], rank=rank,
                                      score=1.0, predicted_label="<mask>", confidence=0.5))
        answers = [("a", "p1", _rows(8)), ("a", "p2", _rows(4)), ("b", "p1", _rows(6)), ("b", "p2", _rows(6)),
                   ("c", "p1", _rows(2)), ("d", "p1", _rows(5, 2)), ("d", "p2", _rows(5, 2))]
        for n, (uri, who, mask) in enumerate(answers):
            session.add(Annotation(campaign_id=campaign.id, sample_id=ids[uri], annotator=who, label="<mask>",
                                   source="labelstudio", external_id=str(n), status=AnnotationStatus.accepted,
                                   mask=mask))
        session.add(Annotation(campaign_id=campaign.id, sample_id=ids["d"], annotator="p3", label="<mask>",
                               source="labelstudio", external_id="99", status=AnnotationStatus.rejected,
                               reason="brush painted at 35x35 pixels"))
    engine.dispose()
    return url


def _cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "220", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "activelabel.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def _table(text: str, title_start: str) -> list[list[str]]:
    """The rows of the rich table whose title starts with ``title_start`` (cells stripped)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(title_start))
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        if "│" in line or "┃" in line:
            rows.append([c.strip() for c in re.split("[│┃]", line)[1:-1]])
    return rows


def test_status_shows_agreement_and_class_weights_per_round(tmp_path) -> None:
    url = _campaign(tmp_path)
    result = _cli(tmp_path, "status", NAME, "--database-url", url)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _table(result.stdout, "Annotators' agreement")
    assert rows[0] == ["round", "agreement", *LABELS]
    assert rows[1:] == [
        ["1", f"{19 / 24:.3f} (2 images)", "0.0233 (700 px)", "0.1628 (100 px)", "0.1628 (100 px)",
         "0.3256 (50 px)", "0.3256 (50 px)"],
        ["3", "1.000 (1 image)", "", "", "", "", ""],
    ]  # round 2: one mask, no weights: no row
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "Annotators' agreement and class weights" in lines  # the title on one line
    assert ("agreement: the mean pairwise IoU of the masks of the round's images painted by 2 or more annotators "
            "(how many images); class weights: each class's weight in class-weighted scoring (its labeled pixels), "
            "w_c = (1 / f_c) / sum_k (1 / f_k), f_c the class's share of the labeled pixels") in lines


def test_the_two_column_agreement_table_keeps_its_title_on_one_line(tmp_path) -> None:
    """Trial 15, F12: without class weights the table has two narrow columns, and its long title
    was wrapped into three fragments; the title is short now and the table at least as wide."""
    url = _campaign(tmp_path)
    engine = open_engine(url)
    with session_scope(engine) as session:
        session.query(Round).update({"uncertainty": None})  # no class weights: agreement alone
    engine.dispose()
    result = _cli(tmp_path, "status", NAME, "--database-url", url)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "Annotators' agreement" in lines, result.stdout
    assert _table(result.stdout, "Annotators' agreement") == [
        ["round", "agreement"], ["1", f"{19 / 24:.3f} (2 images)"], ["3", "1.000 (1 image)"]]
    at = lines.index("Annotators' agreement")
    assert lines[at + 1].startswith("┏") and len(lines[at + 1]) >= len("Annotators' agreement")
    assert ("agreement: the mean pairwise IoU of the masks of the round's images painted by 2 or more annotators "
            "(how many images)") in lines


def test_the_report_shows_the_same_agreement_and_class_weights(tmp_path) -> None:
    from activelabel.report.build import write_report

    engine = open_engine(_campaign(tmp_path))
    write_report(engine, NAME, tmp_path / "seg.html")
    page = (tmp_path / "seg.html").read_text(encoding="utf-8")
    table = re.search(r'<table id="agreement-class-weights">(.*?)</table>', page, re.S).group(1)
    cells = [[html.unescape(c) for c in re.findall(r"<t[dh]>(.*?)</t[dh]>", row)]
             for row in re.findall(r"<tr>(.*?)</tr>", table)]
    assert cells == [["round", "agreement", *LABELS],
                     ["1", f"{19 / 24:.3f} (2 images)", "0.0233 (700 px)", "0.1628 (100 px)", "0.1628 (100 px)",
                      "0.3256 (50 px)", "0.3256 (50 px)"],
                     ["3", "1.000 (1 image)", "", "", "", "", ""]]


def test_a_campaign_without_class_weights_or_several_annotators_shows_no_table(tmp_path) -> None:
    url = _campaign(tmp_path)
    engine = open_engine(url)
    with session_scope(engine) as session:
        session.query(Round).filter(Round.index == 1).update({"uncertainty": None})
        session.query(Annotation).filter(Annotation.annotator == "p2").delete()
    engine.dispose()
    result = _cli(tmp_path, "status", NAME, "--database-url", url)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Annotators' agreement" not in result.stdout
    assert "Campaign segkeep-status" in result.stdout  # the rounds table is still there
    from activelabel.report.build import write_report

    write_report(open_engine(url), NAME, tmp_path / "seg.html")
    assert 'id="agreement-class-weights"' not in (tmp_path / "seg.html").read_text(encoding="utf-8")


def test_agreement_alone_shows_no_class_columns(tmp_path) -> None:
    from activelabel.campaign.summary import segmentation_figure_rows

    url = _campaign(tmp_path)
    engine = open_engine(url)
    with session_scope(engine) as session:
        session.query(Round).filter(Round.index == 1).update({"uncertainty": None})
    assert segmentation_figure_rows(engine, NAME) == (
        ["round", "agreement"], [["1", f"{19 / 24:.3f} (2 images)"], ["3", "1.000 (1 image)"]])
