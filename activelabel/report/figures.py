"""The report's figures, drawn with matplotlib's Agg renderer into PNG bytes (base64 text).

``matplotlib.figure.Figure`` is used directly, not ``pyplot``: no global figure state, no GUI
backend, nothing to close.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence

from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from activelabel.report.curves import mean_curve

Curve = tuple[Sequence[int], Sequence[float]]
_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f"]


def to_base64_png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def color(i: int) -> str:
    return _COLORS[i % len(_COLORS)]


def _class_color(index: int, name: str):
    if name == "unlabeled":
        return "#bbbbbb"
    return colormaps["tab20"](index % 20)


def learning_curves(curves: Mapping[str, Sequence[Curve]], metric: str, title: str) -> str:
    """One line per strategy: the mean over its seeds' curves, with a ± one std band."""
    figure = Figure(figsize=(6.4, 4.0))
    ax = figure.add_subplot()
    for i, (strategy, runs) in enumerate(curves.items()):
        xs, mean, std, count = mean_curve(runs)
        if not xs:
            continue
        ax.plot(xs, mean, marker="o", markersize=3, color=color(i), label=f"{strategy} ({max(count)} seed{'s' if max(count) != 1 else ''})")
        low = [m - s for m, s in zip(mean, std)]
        high = [m + s for m, s in zip(mean, std)]
        ax.fill_between(xs, low, high, color=color(i), alpha=0.2, linewidth=0)
    ax.set_xlabel("labels (training-set size)")
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return to_base64_png(figure)


def class_balance(counts: Mapping[str, Mapping[int, Mapping[str, int]]], classes: Sequence[str]) -> str:
    """Per strategy (one panel each): stacked bars of the classes picked in each round."""
    strategies = list(counts)
    figure = Figure(figsize=(6.4, 2.4 * max(1, len(strategies))))
    for row, strategy in enumerate(strategies):
        ax = figure.add_subplot(len(strategies), 1, row + 1)
        rounds = sorted(counts[strategy])
        bottom = [0] * len(rounds)
        for c, name in enumerate(classes):
            heights = [counts[strategy][r].get(name, 0) for r in rounds]
            if any(heights):
                ax.bar(rounds, heights, bottom=bottom, color=_class_color(c, name), label=name)
                bottom = [b + h for b, h in zip(bottom, heights)]
        ax.set_title(f"{strategy}: classes picked per round (all seeds)", fontsize=9)
        ax.set_ylabel("samples")
        ax.set_xlabel("round")
        if rounds:
            ax.set_xticks(rounds)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return to_base64_png(figure)


def timings(per_strategy: Mapping[str, Mapping[str, Mapping[int, float]]], steps: Sequence[str]) -> str:
    """One panel per step: mean seconds per round, one line per strategy."""
    figure = Figure(figsize=(9.0, 2.8))
    for col, step in enumerate(steps):
        ax = figure.add_subplot(1, len(steps), col + 1)
        for i, (strategy, by_step) in enumerate(per_strategy.items()):
            points = sorted(by_step.get(step, {}).items())
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3,
                        color=color(i), label=strategy)
        ax.set_title(f"{step} (s)", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
        if col == 0:
            ax.legend(fontsize=7)
    figure.tight_layout()
    return to_base64_png(figure)


def score_histogram(pool: Sequence[float], chosen: Sequence[float], title: str) -> str:
    """The acquisition scores of the scored pool against those of the selected samples."""
    figure = Figure(figsize=(6.4, 3.2))
    ax = figure.add_subplot()
    if pool:
        ax.hist(pool, bins=30, alpha=0.6, color=color(0), label=f"pool ({len(pool)})", density=True)
    if chosen:
        ax.hist(chosen, bins=10, alpha=0.8, color=color(1), label=f"selected ({len(chosen)})", density=True)
    ax.set_xlabel("acquisition score")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return to_base64_png(figure)
