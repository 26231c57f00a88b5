"""The experiment page's calibration table gives T2 beside T, as the campaign page does
(trial 15, F14: a segmentation comparison showed T = 1.0000 while ECE dropped 0.0425 -> 0.0110,
the drop coming from the mixture temperature T2 the table left out).

Rounds written by hand as the report reads them (``report.data.CampaignRecord``), so every
figure is known here: two seeds of one strategy at 24 labeled images, and one at 32.
"""

from __future__ import annotations

import numpy as np
from report_tiny import ReportParser

from activelabel.report.data import CampaignRecord, RoundRow
from activelabel.report.uncertainty import experiment_calibration


def _round(labeled: int, t: float, t2: float | None, ece: tuple[float, float]) -> RoundRow:
    measured = {when: {"accuracy": 0.9, "nll": 0.3, "brier": 0.1, "ece": value}
                for when, value in zip(("before", "after"), ece)}
    calibration = {"temperature": t, "validation_size": 4, **measured}
    if t2 is not None:  # a round stored before T2 existed has no key
        calibration["mixture_temperature"] = t2
    return RoundRow(index=2, kind="active", labeled=labeled, accuracy=0.9, nll=0.3, ece=ece[0], timings={},
                    calibration=calibration)


def _record(seed: int, rounds: list[RoundRow]) -> CampaignRecord:
    return CampaignRecord(name=f"seg-entropy-seed{seed}", strategy="entropy", seed=seed, labels=["bg", "disc"],
                          config={}, rounds=rounds, task="segmentation")


def test_the_experiment_calibration_table_has_t2_beside_t() -> None:
    groups = {"entropy": [_record(0, [_round(24, 1.0, 0.80, (0.0425, 0.0110)), _round(32, 1.0, None, (0.03, 0.02))]),
                          _record(1, [_round(24, 1.0, 0.70, (0.0400, 0.0120))])]}
    parser = ReportParser()
    parser.feed("".join(experiment_calibration(groups)))
    header, *rows = parser.tables["calibration-by-labels"]
    assert header == ["strategy", "labels", "seeds", "ECE before", "ECE after", "NLL before", "NLL after", "T", "T2"]
    t2 = np.array([0.80, 0.70])
    assert rows == [
        ["entropy", "24", "2", "0.0413 ± 0.0018", "0.0115 ± 0.0007", "0.3000 ± 0.0000", "0.3000 ± 0.0000",
         "1.0000 ± 0.0000", f"{t2.mean():.4f} ± {t2.std(ddof=1):.4f}"],
        ["entropy", "32", "1", "0.0300", "0.0200", "0.3000", "0.3000",
         "1.0000", ""],  # one seed: the mean alone, no "± 0.0000" (trial 18 F8); T2 stored before it existed: empty
    ]
    assert "T2, for a sampled predictor, rescales the log of the averaged distribution (1: not kept; empty: " \
           "rounds stored before it existed)" in " ".join(parser.texts)
