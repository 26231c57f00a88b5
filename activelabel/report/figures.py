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

from activelabel.report.curves import every_seed_points, mean_curve

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


def _band(ax, xs: Sequence[int], mean: Sequence[float], std: Sequence[float], colour, alpha: float) -> None:
    """± one std around the mean: a band, or an error bar where there is one point (a band of
    zero width would not show)."""
    if len(xs) == 1:
        ax.errorbar(xs, mean, yerr=std, color=colour, linestyle="none", capsize=4, linewidth=1)
    else:
        ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                        color=colour, alpha=alpha, linewidth=0)


def learning_curves(curves: Mapping[str, Sequence[Curve]], metric: str, title: str, xlabel: str = "labels",
                    *, unit_interval: bool = False) -> str:
    """One line per strategy: the mean over its seeds' curves, with a ± one std band (see
    :func:`learning_curves_figure`)."""
    return to_base64_png(learning_curves_figure(curves, metric, title, xlabel, unit_interval=unit_interval))


def learning_curves_figure(curves: Mapping[str, Sequence[Curve]], metric: str, title: str,
                           xlabel: str = "labels", *, unit_interval: bool = False) -> Figure:
    """The learning-curve figure. ``unit_interval``: the metric lies in [0, 1] (accuracy, ECE,
    mIoU), so the y axis starts at 0 and ends at most just above 1 (a band's std would reach
    below 0), and an all-zero curve gets 0 to 1, not matplotlib's -0.04 to 0.04 (trial F7c)."""
    figure = Figure(figsize=(6.4, 4.0))
    ax = figure.add_subplot()
    highest = 0.0
    some_unequal = False
    for i, (strategy, runs) in enumerate(curves.items()):
        xs, mean, std, count = mean_curve(runs)
        if not xs:
            continue
        seeds = max(count)
        # Solid with its band where every seed has run; past the shortest seed the mean holds
        # fewer seeds (an experiment still running, or interrupted), drawn dotted and bandless so
        # a jump there is not read as the strategy's.
        full = every_seed_points(runs, count)
        ax.plot([xs[j] for j in full], [mean[j] for j in full], marker="o", markersize=3, color=color(i),
                label=f"{strategy} ({seeds} seed{'s' if seeds != 1 else ''})")
        _band(ax, [xs[j] for j in full], [mean[j] for j in full], [std[j] for j in full], color(i), 0.2)
        if len(full) < len(xs):
            some_unequal = True
            tail = [j for j in range(len(xs)) if j >= (full[-1] if full else 0)]
            ax.plot([xs[j] for j in tail], [mean[j] for j in tail], linestyle=":", marker=".", markersize=3,
                    color=color(i))
        highest = max(highest, *(m + s for m, s in zip(mean, std)))
    if some_unequal:
        ax.plot([], [], linestyle=":", color="0.4", label="dotted: fewer seeds have run")
    if unit_interval:
        top = ax.get_ylim()[1]
        ax.set_ylim(0, 1.0 if highest <= 0 else min(top, 1.02))
    ax.set_xlabel(xlabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # label counts: no 22.5 ticks (trial 17 F9)
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure


def class_balance(counts: Mapping[str, Mapping[int, Mapping[str, float]]], classes: Sequence[str],
                  ylabel: str = "samples", across: str = "") -> str:
    """Per strategy (one panel each): stacked bars of the classes picked in each round
    (``counts[strategy][round][class]``: samples, or for segmentation a share of pixels).
    ``across``: the titles' suffix, " (all seeds)" where bars add an experiment's seeds; a
    single campaign's report has none (trial 14 F3)."""
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
        ax.set_title(f"{strategy}: classes picked per round{across}", fontsize=9)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("round")
        if rounds:
            ax.set_xticks(rounds)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return to_base64_png(figure)


def timings(per_strategy: Mapping[str, Mapping[str, Mapping[int, float]]], steps: Sequence[str]) -> str:
    """One panel per step: mean seconds per round, one line per strategy."""
    figure = Figure(figsize=(2.75 * max(len(steps), 1), 2.8))
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


def _mean_band(ax, runs: Sequence[Curve], colour: str, label: str, linestyle: str = "-", marker: str = "o") -> bool:
    """Plot the mean over ``runs`` with a ± one std band; False when no run has a point."""
    xs, mean, std, _ = mean_curve(runs)
    if not xs:
        return False
    ax.plot(xs, mean, marker=marker, markersize=4, color=colour, linestyle=linestyle, label=label)
    _band(ax, xs, mean, std, colour, 0.15)
    return True


def calibration_curves(runs: Mapping[str, Mapping[str, Sequence[Curve]]]) -> str:
    """Calibration against labels, three panels: ECE and NLL before (dashed) and after (solid)
    temperature scaling, and the fitted temperature; one colour per strategy, the mean over its
    seeds with a ± one std band.

    ``runs[strategy]`` maps ``"ece_before"``, ``"ece_after"``, ``"nll_before"``, ``"nll_after"``
    and ``"temperature"`` to one (labels, values) curve per seed. A panel whose curves have no
    point is left out (a round that fitted T without a test split to measure it on has only a
    temperature); call it only when some curve has a point — the page says why otherwise.
    """
    panels = [(key, label) for key, label in (("ece", "test ECE"), ("nll", "test NLL (nats)"),
                                              ("temperature", "temperature T"))
              if any(xs for series in runs.values() for name, curves in series.items() if name.startswith(key)
                     for xs, _ in curves)]
    figure = Figure(figsize=(3.5 * len(panels), 3.4))
    for col, (key, label) in enumerate(panels):
        ax = figure.add_subplot(1, len(panels), col + 1)
        for i, (strategy, series) in enumerate(runs.items()):
            if key == "temperature":
                _mean_band(ax, series.get("temperature", []), color(i), strategy)
            else:
                _mean_band(ax, series.get(f"{key}_before", []), color(i), f"{strategy}, before", "--", "x")
                _mean_band(ax, series.get(f"{key}_after", []), color(i), f"{strategy}, after")
        if key == "temperature":
            ax.axhline(1.0, color="#888888", linewidth=0.8, linestyle=":")
        ax.set_xlabel("labels")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.set_title(label + (" (T > 1 softens, < 1 sharpens)" if key == "temperature"
                              else ": before (x, dashed) / after (o)"), fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    figure.tight_layout()
    return to_base64_png(figure)


def _reliability_panel(ax, bins: Sequence[Mapping]) -> None:
    filled = [b for b in bins if b.get("count") and b.get("accuracy") is not None]
    width = [b["upper"] - b["lower"] for b in filled]
    centres = [(b["lower"] + b["upper"]) / 2 for b in filled]
    ax.bar(centres, [b["accuracy"] for b in filled], width=width, color=color(0), edgecolor="white",
           label="accuracy")
    # The gap hatched, not filled: below the accuracy top (under-confident bins) a translucent fill
    # over the blue bar read as a third colour that the legend did not have (trial 17 F8).
    ax.bar(centres, [b["confidence"] - b["accuracy"] for b in filled], bottom=[b["accuracy"] for b in filled],
           width=width, fill=False, hatch="///", edgecolor=color(1), linewidth=0.8,
           label="gap to confidence (above: over-, below: under-confident)")
    ax.plot([0, 1], [0, 1], color="#555555", linestyle="--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, loc="upper left")


def _count_panel(ax, bins: Sequence[Mapping], title: str) -> None:
    total = sum(b.get("count") or 0 for b in bins) or 1
    ax.bar([(b["lower"] + b["upper"]) / 2 for b in bins], [(b.get("count") or 0) / total for b in bins],
           width=[b["upper"] - b["lower"] for b in bins], color="#999999", edgecolor="white")
    ax.set_xlim(0, 1)
    ax.set_ylabel("share", fontsize=8)
    ax.tick_params(labelbottom=False, labelsize=7)
    ax.set_title(title, fontsize=9)


def reliability_diagram(before: Mapping, after: Mapping, temperature: float, title: str, *,
                        mixture_temperature: float = 1.0) -> str:
    """Reliability diagrams before and after temperature scaling, from stored bins (Guo et al.
    2017, Fig. 1): per confidence bin, the accuracy (bar) against the mean confidence (the
    shaded gap), the diagonal of perfect calibration, and above each the share of samples per bin.

    ``before`` / ``after`` are a round's stored ``calibration["before"|"after"]`` dicts (``ece``
    and ``bins``: lower, upper, confidence, accuracy, count). ``mixture_temperature`` (T2 of a
    sampled predictor, applied to the log of the averaged distribution) is named in the "after"
    panel's title when it is not 1.
    """
    figure = Figure(figsize=(9.0, 4.8))
    grid = figure.add_gridspec(2, 2, height_ratios=(1, 3.2), hspace=0.06, wspace=0.25)
    for col, (when, measured, t) in enumerate((("before", before, 1.0), ("after", after, temperature))):
        ece = measured.get("ece")
        t2 = f", T2 = {mixture_temperature:.3f}" if when == "after" and mixture_temperature != 1.0 else ""
        _count_panel(figure.add_subplot(grid[0, col]), measured["bins"],
                     f"{when} (T = {t:.3f}{t2})" + ("" if ece is None else f" · ECE {ece:.4f}"))
        _reliability_panel(figure.add_subplot(grid[1, col]), measured["bins"])
    figure.suptitle(title, fontsize=10)
    return to_base64_png(figure)


def decomposition_histograms(pool: Mapping[str, Sequence[float]], selected: Mapping[str, Sequence[float]],
                             parts: Sequence[str], title: str) -> str:
    """One panel per part (total, aleatoric, epistemic; nats): the scored pool's distribution
    (density histogram) and where the selected samples sit in it (a red tick per selected
    sample below the axis, their histogram when there are 20 or more)."""
    figure = Figure(figsize=(10.5, 3.0))
    for col, part in enumerate(parts):
        ax = figure.add_subplot(1, len(parts), col + 1)
        values = list(pool[part])
        ax.hist(values, bins=30, color=color(0), alpha=0.6, density=True, label=f"pool ({len(values)})")
        chosen = list(selected[part])
        if len(chosen) >= 20:
            ax.hist(chosen, bins=15, color=color(1), alpha=0.6, density=True, label=f"selected ({len(chosen)})")
        elif chosen:
            ax.plot(chosen, [0.0] * len(chosen), linestyle="none", marker="|", markersize=18, markeredgewidth=2,
                    color=color(1), label=f"selected ({len(chosen)})", clip_on=False)
        ax.set_xlabel(f"{part} (nats)")
        ax.set_ylabel("density" if col == 0 else "")
        ax.set_title(part + (" (BALD)" if part == "epistemic" else ""), fontsize=9)
        ax.legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return to_base64_png(figure)


def decomposition_comparison(means: Mapping[str, Mapping[str, Mapping[int, tuple[float, float | None]]]],
                             parts: Sequence[str]) -> str:
    """One panel per part: per strategy and round, the mean over seeds of the selected samples'
    uncertainty (solid) and of the scored pool's (dashed). ``means[strategy][part][round]`` is
    ``(pool mean, selected mean or None)``."""
    figure = Figure(figsize=(10.5, 3.2))
    for col, part in enumerate(parts):
        ax = figure.add_subplot(1, len(parts), col + 1)
        for i, (strategy, by_part) in enumerate(means.items()):
            points = sorted(by_part.get(part, {}).items())
            if not points:
                continue
            ax.plot([p[0] for p in points], [p[1][0] for p in points], linestyle="--", marker="o", markersize=3,
                    color=color(i), alpha=0.7, label=f"{strategy}, pool")
            picked = [(r, v[1]) for r, v in points if v[1] is not None]
            if picked:
                ax.plot([p[0] for p in picked], [p[1] for p in picked], marker="o", markersize=3, color=color(i),
                        label=f"{strategy}, selected")
        ax.set_title(f"mean {part}" + (" (BALD)" if part == "epistemic" else "") + " (nats)", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
        if col == 0 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    figure.tight_layout()
    return to_base64_png(figure)


def density_histogram(pool: Sequence[float], selected: Sequence[float], threshold: float, percentile: float,
                      title: str) -> str:
    """The scored pool's feature log densities ``log q(z)`` (nats) against the selected samples',
    with the round's OOD threshold as a vertical line: samples left of it (lower density) are
    flagged out of distribution.

    Class-Gaussian densities of high-dimensional features often span orders of magnitude (with
    jittered covariances, ``log q`` around -1e12 is common); then the x axis is ``-log q(z)`` on
    a log scale (right = less familiar, flagged samples right of the line), else ``log q(z)`` on a
    linear one.
    """
    import numpy as np

    values = np.asarray(pool, dtype=np.float64)
    chosen = np.asarray(selected, dtype=np.float64)
    everything = np.concatenate([values, chosen, [threshold]])
    flip = bool(np.all(everything < 0) and everything.min() / everything.max() > 100)
    figure = Figure(figsize=(6.4, 3.2))
    ax = figure.add_subplot()
    shown, cut = (-values, -threshold) if flip else (values, threshold)
    picks = -chosen if flip else chosen
    span = -everything if flip else everything
    bins: object = 30
    if span.max() > span.min():
        bins = np.geomspace(span.min(), span.max(), 31) if flip else np.linspace(span.min(), span.max(), 31)
    if flip:
        ax.set_xscale("log")
    ax.hist(shown, bins=bins, color=color(0), alpha=0.6, label=f"pool ({len(values)})")
    if len(picks):
        ax.hist(picks, bins=bins, color=color(1), alpha=0.8, label=f"selected ({len(picks)})")
    ax.axvline(cut, color="#333333", linestyle="--", linewidth=1.2,
               label=f"OOD threshold ({percentile:g}th percentile of the labeled set)")
    ax.set_xlabel("−log q(z) (nats, log scale; right = less familiar)" if flip
                  else "log q(z) (nats; left = less familiar)")
    ax.set_ylabel("samples")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return to_base64_png(figure)
