"""An experiment read while it runs (or after an interruption) holds seeds of unequal length.

Past a strategy's shortest seed, a "mean over seeds" averages fewer seeds at each later point,
so a jump there is the seeds' mix, not the strategy. The report reads labels-to-target only where
every seed has run, cuts the AULC column to the span every campaign has run, and draws the
thinner tail of a mean curve dotted (found reading the Gal 2017 rerun's report mid-run: random
"reached 90 % at 160 labels" on seed 0 alone while its other two seeds stood at 100).
"""

from __future__ import annotations

import pytest

from activelabel.report.build import aulc_rows, aulc_span_note, labels_to_target_rows
from activelabel.report.curves import aulc, shared_span, within
from activelabel.report.data import CampaignRecord, RoundRow
from activelabel.report.figures import learning_curves_figure


def _record(strategy: str, seed: int, curve: list[tuple[int, float]]) -> CampaignRecord:
    rounds = [RoundRow(i + 1, "active", n, acc, 0.3, 0.05, {}) for i, (n, acc) in enumerate(curve)]
    return CampaignRecord(f"x-{strategy}-seed{seed}", strategy, seed, ["0", "1"], {}, rounds)


# random: seed 0 ran to 160 labels, seeds 1 and 2 stopped at 100 (the experiment was interrupted)
RANDOM = [
    _record("random", 0, [(20, 0.5), (60, 0.8), (100, 0.85), (130, 0.88), (160, 0.91)]),
    _record("random", 1, [(20, 0.5), (60, 0.75), (100, 0.86)]),
    _record("random", 2, [(20, 0.55), (60, 0.78), (100, 0.87)]),
]
BALD = [
    _record("bald", 0, [(20, 0.5), (60, 0.8), (100, 0.9), (130, 0.93)]),
    _record("bald", 1, [(20, 0.5), (60, 0.84), (100, 0.92), (130, 0.95)]),
]


def test_labels_to_target_is_read_only_where_every_seed_has_run():
    rows = labels_to_target_rows({"random": RANDOM, "bald": BALD}, [0.8, 0.9])
    assert rows == [
        # the mean at 60 labels is (0.8 + 0.75 + 0.78) / 3 = 0.777 < 0.8; at 100: 0.86
        ["random", "100 (seeds: 60, 100, 100)",
         "not reached by 100 (where all 3 seeds have run) (seeds: 160, —, —)"],
        ["bald", "60 (seeds: 60, 60)", "100 (seeds: 100, 100)"],
    ]
    # a lone campaign, and seeds of equal length, read as before
    assert labels_to_target_rows({"bald": BALD[:1]}, [0.9], per_seed=False) == [["bald", "100"]]


def test_shared_span_and_within():
    curves = [r.curve() for r in RANDOM + BALD]
    assert shared_span(curves) == (20, 100)
    assert shared_span([([40, 60], [0.1, 0.2]), ([20, 30], [0.1, 0.2])]) is None  # no overlap
    assert shared_span([([], [])]) is None
    assert within(RANDOM[0].curve(), (20, 100)) == ([20, 60, 100], [0.5, 0.8, 0.85])


def test_the_aulc_column_covers_the_span_every_campaign_has_run_and_says_so():
    groups = {"random": RANDOM, "bald": BALD}
    rows = {row[0]: row for row in aulc_rows(groups)}
    expected_random = [aulc([20, 60, 100], [0.5, 0.8, 0.85]), aulc([20, 60, 100], [0.5, 0.75, 0.86]),
                       aulc([20, 60, 100], [0.55, 0.78, 0.87])]
    mean = sum(expected_random) / 3
    assert rows["random"][2].startswith(f"{mean:.4f} ± ")
    expected_bald = [aulc([20, 60, 100], [0.5, 0.8, 0.9]), aulc([20, 60, 100], [0.5, 0.84, 0.92])]
    assert rows["bald"][2].startswith(f"{sum(expected_bald) / 2:.4f} ± ")
    # the gain pairs each seed with random's same seed over what both ran: seed 0 to 130 labels
    gain_seed0 = aulc([20, 60, 100, 130], [0.5, 0.8, 0.9, 0.93]) - aulc([20, 60, 100, 130], [0.5, 0.8, 0.85, 0.88])
    gain_seed1 = aulc([20, 60, 100], [0.5, 0.84, 0.92]) - aulc([20, 60, 100], [0.5, 0.75, 0.86])
    assert float(rows["bald"][3]) == pytest.approx((gain_seed0 + gain_seed1) / 2, abs=5e-5)
    note = aulc_span_note(groups)
    assert "covers 20–100 labels, the span every campaign of the experiment has run (some have run to 160)" in note
    equal = {"bald": BALD}  # both seeds to 130: nothing to say
    assert aulc_span_note(equal) == ""


def test_the_mean_curve_is_solid_where_every_seed_has_run_and_dotted_after():
    figure = learning_curves_figure({"random": [r.curve() for r in RANDOM], "bald": [r.curve() for r in BALD]},
                                    "test accuracy", "t", unit_interval=True)
    lines = {(line.get_label(), line.get_linestyle()): list(line.get_xdata()) for line in figure.axes[0].lines}
    assert lines[("random (3 seeds)", "-")] == [20, 60, 100]
    dotted = [xs for (label, style), xs in lines.items() if style == ":" and not label.startswith("dotted")]
    assert dotted == [[100, 130, 160]]  # random's tail, from its last full point; bald has none
    assert lines[("bald (2 seeds)", "-")] == [20, 60, 100, 130]
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert "dotted: fewer seeds have run" in legend
