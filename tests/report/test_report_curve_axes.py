"""Learning curves of metrics in [0, 1] (accuracy, ECE, mIoU) never show a y axis below 0: an
all-zero accuracy curve drew -0.04 to 0.04 (trial F7c). Real matplotlib figures, their limits read."""

from __future__ import annotations

from activelabel.report.figures import learning_curves, learning_curves_figure


def _ylim(curves, unit_interval: bool = True) -> tuple[float, float]:
    return learning_curves_figure(curves, "test accuracy", "t", unit_interval=unit_interval).axes[0].get_ylim()


def test_an_all_zero_accuracy_curve_spans_0_to_1() -> None:
    assert _ylim({"bald": [([10, 20, 30], [0.0, 0.0, 0.0])]}) == (0.0, 1.0)


def test_a_band_reaching_below_0_is_cut_at_0_and_the_top_follows_the_data() -> None:
    # ECE 0.01 ± 0.02 over two seeds: the band reaches -0.01; the axis starts at 0, ends near the data
    bottom, top = _ylim({"bald": [([10, 20], [0.0, 0.02]), ([10, 20], [0.02, 0.0])]})
    assert bottom == 0.0 and 0.02 < top < 0.1


def test_accuracy_near_1_ends_just_above_1() -> None:
    bottom, top = _ylim({"bald": [([10, 20], [0.97, 1.0]), ([10, 20], [0.99, 0.96])]})
    assert bottom == 0.0 and 1.0 <= top <= 1.02


def test_an_unbounded_metric_keeps_matplotlibs_axis() -> None:
    bottom, top = _ylim({"bald": [([10, 20], [2.3, 1.1])]}, unit_interval=False)  # NLL
    assert 0 < bottom < 1.1 and top > 2.3  # not pinned to 0: NLL's curve keeps its own range


def test_the_png_is_drawn() -> None:
    text = learning_curves({"bald": [([10], [0.0])]}, "test ECE", "t", unit_interval=True)
    assert text.startswith("iVBORw0KGgo")  # base64 of the PNG signature
