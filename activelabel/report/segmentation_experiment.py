"""The report of a segmentation experiment (``activelabel report EXPERIMENT`` when its arms are
segmentation campaigns, e.g. from ``activelabel compare --task segmentation``).

The classification experiment page's structure and numbers (:mod:`activelabel.report.build`)
with the learning curve of a segmentation round: mIoU, pixel accuracy and pixel ECE
(``round.segmentation_metrics``) against labeled images, mean ± std over seeds; labels to an
mIoU, area under the mIoU curve and the paired test of each strategy's gain over random read
that curve through the same functions. What classification shows by class labels becomes
pixels: the picks' class balance is the share of painted pixels per class in their masks,
summed over seeds, and the selected samples are their heatmaps. Feature density is left out
with a sentence: segmentation rounds store none.

Read from storage only (and the heatmap files the rounds wrote); nothing is run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import Engine

from activelabel.report import figures, html, uncertainty
from activelabel.report.build import (
    TEST_EXPLANATION, _settings_table, aulc_section, by_strategy, drawn_kinds, drawn_note, experiment_timings_section,
    labels_to_target_rows, most_labeled, settings_rows,
)
from activelabel.report.data import CampaignRecord
from activelabel.report.segmentation import METRICS, _heatmap_figure, picked_in_words
from activelabel.report.segmentation_data import heatmap_rows, picked_pixel_shares

MIOU_EXPLANATION = (TEST_EXPLANATION.replace("accuracy curve", "mIoU curve").replace("mean accuracy", "mean mIoU")
                    .replace("same test split", "same test images"))


def miou_curve(record: CampaignRecord) -> tuple[list[int], list[float]]:
    """A segmentation run's learning curve: (labeled images, mIoU) of its complete active rounds."""
    return record.segmentation_curve("miou")


def _learning_curves(groups: dict[str, list[CampaignRecord]]) -> list[str]:
    parts = []
    for key, label, name in METRICS:
        curves = {s: [r.segmentation_curve(key) for r in runs] for s, runs in groups.items()}
        if not any(xs for runs in curves.values() for xs, _ in runs):
            parts.append(html.note(f"No {label} curve: no complete active round measured it yet (rounds without a "
                                   "model, and campaigns without test or labeled evaluation masks, measure nothing)."))
            continue
        parts.append(html.figure(
            figures.learning_curves(curves, label, f"{label} against labeled images (mean ± std over seeds)",
                                    xlabel="labeled images", unit_interval=True),
            name, f"Learning curve: {label} on the test (or evaluation) masks, mean ± one std over seeds"))
    return parts


def _pixel_balance(engine: Engine, groups: dict[str, list[CampaignRecord]], classes: Sequence[str]) -> list[str]:
    """Per strategy and round, the painted pixels per class of the picks' masks summed over
    seeds, as shares (a figure and a table); the seed masks' shares as the reference row."""
    summed: dict[str, dict[int | None, tuple[int, np.ndarray]]] = {}
    for strategy, runs in groups.items():
        for record in runs:
            for key, shares in picked_pixel_shares(engine, record.campaign_id, len(classes)).items():
                images, pixels = summed.setdefault(strategy, {}).get(key, (0, np.zeros(len(classes))))
                summed[strategy][key] = (images + shares.images, pixels + shares.pixels)
    if not any(k is not None for rounds in summed.values() for k in rounds):
        return [html.note("No selected image has a mask yet, so there is no pixel balance of the picks to show.")]

    def percent(pixels: np.ndarray) -> np.ndarray:
        total = float(pixels.sum())
        return 100.0 * pixels / total if total else np.zeros_like(pixels)

    records = [r for runs in groups.values() for r in runs]
    drawn = {i: kind for r in records for i, kind in drawn_kinds(r).items()}
    counts = {s: {k: dict(zip(classes, map(float, percent(p)))) for k, (_, p) in rounds.items()
                  if k is not None and k not in drawn}
              for s, rounds in summed.items()}
    rows = [[strategy, picked_in_words(key, drawn), str(rounds[key][0]),
             *[f"{v:.1f}" for v in percent(rounds[key][1])]]
            for strategy, rounds in summed.items()
            for key in ([None] if None in rounds else []) + sorted(k for k in rounds if k is not None)]
    picked = {s: c for s, c in counts.items() if c}
    return [
        *([html.figure(figures.class_balance(picked, classes, ylabel="% of painted pixels"), "pixel-balance",
                       "Classes of the painted pixels in the masks of the images each strategy picked, per round, "
                       "over all seeds (% of the round's painted pixels)")] if picked else []),
        html.table("pixel-share", ["strategy", "picked in", "images (all seeds)", *[f"{c} %" for c in classes]], rows),
        html.note("Segmentation's class balance: per strategy and group of images, each class's share of the painted "
                  "pixels of their masks, summed over seeds (ignore pixels left out). The seed masks are the same for "
                  "every strategy of a seed; a strategy that hunts uncertain pixels shifts the share towards thin and "
                  "small classes."),
        drawn_note(records),
    ]


def _heatmaps(engine: Engine, record: CampaignRecord, size: int) -> list[str]:
    """The last round's top ``size`` heatmaps of one run (a strategy's first seed)."""
    rows = heatmap_rows(engine, record.campaign_id)
    if not rows:
        return [html.note(f"{record.name}: no heatmap stored yet (each active round writes one per selected image).")]
    last = max(r.round_index for r in rows)
    shown = [r for r in rows if r.round_index == last and r.rank < size]
    return [html.note(f"{record.name}, round {last}: the {len(shown)} highest-ranked selections' heatmaps (image, "
                      "predicted mask, scored per-pixel map, max-softmax map)."),
            *[_heatmap_figure(r, f"heatmap-{record.strategy}") for r in shown]]


def experiment_page(engine: Engine, name: str, settings: dict, records: Sequence[CampaignRecord],
                    targets: Sequence[float], gallery_size: int) -> str:
    """The whole HTML page of segmentation experiment ``name``; ``targets`` are mIoU values."""
    groups = by_strategy(records)
    classes = records[0].labels if records else []
    body = [html.section("Settings", _settings_table([["task kind", "segmentation"],
                                                      *settings_rows(settings, most_labeled(records))]),
                         anchor="settings")]
    body.append(html.section("Learning curves", *_learning_curves(groups), anchor="learning-curves"))
    body.append(html.section(
        "Labeled images needed to reach an mIoU",
        html.table("labels-to-target", ["strategy", *[f"mIoU ≥ {t:g}" for t in targets]],
                   labels_to_target_rows(groups, targets, curve=miou_curve)),
        html.note("Read on the mean mIoU curve over seeds: the first measured number of labeled images at or above "
                  "the target (no interpolation). Per-seed figures in brackets; — : not reached."),
        anchor="labels-to-target-section",
    ))
    body.append(aulc_section(groups, "Area under the mIoU curve and gain over random", "AULC of mIoU (mean ± std)",
                             MIOU_EXPLANATION, curve=miou_curve))
    body.append(html.section("Calibration: per-pixel temperature scaling", *uncertainty.experiment_calibration(groups),
                             anchor="calibration"))
    body.append(html.section(
        "Uncertainty decomposition: pool against selected", *uncertainty.experiment_decomposition(engine, groups),
        html.note("For segmentation, each image's total, aleatoric and epistemic uncertainty is the mean over its "
                  "pixels of the per-pixel predictive entropy, expected entropy and BALD."),
        anchor="decomposition"))
    body.append(html.section("Feature density", html.note(
        "Not shown: segmentation rounds store no feature density (it is fitted on a classifier's features per "
        "image), so there are no out-of-distribution flags to compare."), anchor="density"))
    body.append(html.section("Pixel balance of the picks", *_pixel_balance(engine, groups, classes),
                             anchor="class-balance-section"))
    body.append(html.section("Heatmaps of the selected images",
                             *[part for runs in groups.values() for part in _heatmaps(engine, runs[0], gallery_size)],
                             anchor="gallery"))
    body.append(experiment_timings_section(groups))
    return html.page(f"Experiment {name} (segmentation)", body)
