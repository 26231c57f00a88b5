"""The report of one segmentation campaign (``activelabel report CAMPAIGN`` when its task is
``segmentation``).

What a classification page shows by class labels, this page shows by pixels: the learning
curve is mIoU (and pixel accuracy, pixel ECE) against labeled images, each round's per-class
IoU is a table, the picks' class balance is the share of painted pixels per class in their
masks, and the selected samples are their heatmap PNGs (image | predicted mask | uncertainty
map | max-softmax map), embedded with the map's summary statistics. Sections that only make
sense for class labels (labels to an accuracy, temperature scaling, a thumbnail gallery with
label and prediction) are replaced or say in a sentence why they are absent. Temperature
scaling is per pixel (``campaign.segmentation_calibration``) and shown as classification's.

Everything comes from the database (``round.segmentation_metrics``, the ``heatmap`` table,
``annotation.mask``) and the heatmap files it points to; nothing is run.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine

from activelabel.campaign.summary import TRAINED_ON_NOTE
from activelabel.campaign.training_terms import COLUMNS_NOTE as TRAINING_COLUMNS_NOTE, training_cells
from activelabel.report import figures, html, uncertainty
from activelabel.report.build import drawn_kinds, drawn_note
from activelabel.report.curves import aulc, labels_to_target
from activelabel.report.data import CampaignRecord, RoundRow
from activelabel.report.settings import ROUND_KEYS, annotator_rows, calibrate_rows, data_keys, key_rows, masked
from activelabel.report.segmentation_data import HeatmapRow, heatmap_rows, picked_pixel_shares

DEFAULT_TARGETS = (0.6, 0.7, 0.8)  # mIoU
METRICS = (("miou", "mIoU", "learning-curve-miou"),
           ("pixel_accuracy", "pixel accuracy", "learning-curve-pixel-accuracy"),
           ("pixel_ece", "pixel ECE", "learning-curve-pixel-ece"))
HEATMAP_ROUNDS = 3  # heatmaps embedded: the top-ranked picks of the last N rounds that wrote some
# "evaluate": measuring the round's model on the yardstick and fitting its temperature, apart
# from "train" (rounds stored before it existed counted it in "train").
STEPS = ("train", "evaluate", "score", "select")


def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def settings_rows(record: CampaignRecord) -> list[list[str]]:
    """The settings a reader needs to judge the figures: task kind, model, uncertainty method,
    per-pixel map, aggregation, then the data and round settings."""
    from activelabel.campaign.config import SEGMENTATION_STRATEGY_MAPS

    c = record.config
    scored = next((r.uncertainty for r in reversed(record.rounds) if r.uncertainty), None) or {}
    drawn = scored.get("map") or SEGMENTATION_STRATEGY_MAPS.get(record.strategy) or "random"
    method = c.get("uncertainty", "mc_dropout")
    passes = (f"MC dropout, T = {c.get('mc_samples')} stochastic passes" if method == "mc_dropout"
              else "one deterministic pass (T = 1)" if method == "deterministic" else method)
    aggregation = c.get("aggregation", "top_q")
    if aggregation == "top_q":
        aggregation = f"top_q: mean of the top {c.get('aggregation_q', 0.1):g} of pixels"
    rows = [
        ["task kind", record.task],
        ["strategy", record.strategy],
        ["seed", str(record.seed)],
        ["model", f"{c.get('architecture')} (dropout {c.get('dropout')} before the segmentation head)"],
        ["uncertainty method", f"{method} — {passes}"],
        ["per-pixel map scored", drawn],
        ["aggregation (pixels → image score)", aggregation],
        ["classes", ", ".join(record.labels)],
    ]
    # Only what applies to its data (a given test set: no test_fraction nor evaluation_size) and
    # is set (no "pool_subset None"); Label Studio's completion rule and image serving when it labels.
    rows += key_rows(c, [*data_keys(c), *ROUND_KEYS, "epochs", "fixed_epochs"])
    rows += calibrate_rows(c, max((r.labeled or 0 for r in record.rounds), default=0), task="segmentation")
    rows += annotator_rows(c)
    default_folder = ("None: ./activelabel-heatmaps/<campaign> under the folder the rounds ran in (the heatmap "
                      "table below gives each file's path)")
    rows.append(["heatmap_dir", default_folder if c.get("heatmap_dir") is None else masked(c["heatmap_dir"])])
    return rows


def _measures(r: RoundRow) -> list[str]:
    """What the latest-round sentence says of a segmentation round: mIoU, pixel accuracy, pixel ECE."""
    m = r.segmentation or {}
    said = [f"{label} {m[key]:.4f}" for key, label, _ in METRICS if m.get(key) is not None]
    if not m and r.kind == "active":
        said.append("no test or labeled evaluation mask to measure on")
    return said


def _learning_curves(record: CampaignRecord) -> list[str]:
    parts = []
    for key, label, name in METRICS:
        xs, ys = record.segmentation_curve(key)
        if not xs:
            parts.append(html.note(f"No {label} curve: no complete active round measured it yet (rounds without a "
                                   "model, and campaigns without test or labeled evaluation masks, measure nothing)."))
            continue
        parts.append(html.figure(
            figures.learning_curves({record.strategy: [(xs, ys)]}, label, f"{label} against labeled images",
                                     xlabel="labeled images", unit_interval=True),  # mIoU, pixel accuracy, ECE
            name, f"Learning curve: {label} on the test (or evaluation) masks against labeled images"))
    return parts


def _rounds_tables(engine: Engine, record: CampaignRecord, targets: Sequence[float]) -> list[str]:
    rows, ious = [], []
    for r in record.rounds:
        m = r.segmentation or {}
        rows.append([str(r.index), r.kind.replace("_", " "), r.trained_on_cell(),
                     _fmt(m.get("miou")), _fmt(m.get("pixel_accuracy")), _fmt(m.get("pixel_ece")),
                     str(m.get("pixels", "")), *training_cells(r.training),
                     *[f"{r.timings[s]:.2f}" if s in r.timings else "" for s in STEPS]])
        if m.get("per_class_iou"):
            per_class = m["per_class_iou"]
            ious.append([str(r.index), "" if r.labeled is None else str(r.labeled),
                         *["—" if per_class.get(c) is None else f"{per_class[c]:.4f}" for c in record.labels],
                         _fmt(m.get("miou"))])
    parts = [html.table("rounds", ["round", "kind", "trained on", "mIoU", "pixel accuracy", "pixel ECE",
                                   "pixels measured", "epochs", "steps", *[f"{s} s" for s in STEPS]], rows),
             html.note(f"{TRAINED_ON_NOTE.replace('the labels', 'the labeled images')} {TRAINING_COLUMNS_NOTE}")]
    if ious:
        parts.append(html.table("per-class-iou", ["round", "labeled images", *record.labels, "mIoU"], ious,
                                caption="Per-class IoU on the test (or evaluation) masks, per round"))
        parts.append(html.note("IoU = intersection over union of the predicted and true pixels of a class; mIoU is "
                               "the mean over the classes present (— : the class is in neither the prediction nor "
                               "the truth, so it has no IoU and is left out of the mean). Pixels marked ignore "
                               "(255) count nowhere."))
    else:
        parts.append(html.note("No per-class IoU: no round measured on test or labeled evaluation masks yet."))
    parts += _agreement_and_weights(engine, record)
    xs, ys = record.segmentation_curve("miou")
    reached = [labels_to_target(xs, ys, t) for t in targets]
    parts.append(html.table("labels-to-target", ["strategy", *[f"mIoU ≥ {t:g}" for t in targets]],
                            [[record.strategy, *["not reached" if n is None else str(n) for n in reached]]],
                            caption="Labeled images needed to reach an mIoU (the first measured round at or above it)"))
    if xs:
        parts.append(html.table("aulc", ["strategy", "labeled images", "points", "AULC (mIoU)"],
                                [[record.strategy, f"{xs[0]}–{xs[-1]}", str(len(xs)), f"{aulc(xs, ys):.4f}"]],
                                caption="Area under the mIoU curve over the label span (its mean mIoU)"))
    return parts


def _agreement_and_weights(engine: Engine, record: CampaignRecord) -> list[str]:
    from activelabel.campaign.summary import segmentation_figure_rows

    header, rows = segmentation_figure_rows(engine, record.name)
    if not rows:
        return []
    weighted = len(header) > 2
    return [html.table(
        "agreement-class-weights", header, rows,
        caption="Annotators' agreement per round: mean pairwise IoU of the masks of the round's images painted by 2 "
                "or more (how many)" + (
                    "; class weights of class-weighted scoring (labeled pixels per class): w_c = (1 / f_c) / "
                    "sum_k (1 / f_k), f_c the class's share of the labeled pixels" if weighted else ""))]


def _pixel_balance(engine: Engine, campaign_id: int, record: CampaignRecord) -> list[str]:
    shares = picked_pixel_shares(engine, campaign_id, len(record.labels))
    rounds = sorted(k for k in shares if k is not None)
    if not rounds:
        return [html.note("No selected image has a mask yet, so there is no pixel balance of the picks to show.")]
    drawn = drawn_kinds(record)
    counts = {record.strategy: {i: {c: float(v) for c, v in zip(record.labels, 100.0 * shares[i].shares())}
                                for i in rounds if i not in drawn}}
    rows = [[picked_in_words(key, drawn), str(shares[key].images), *[f"{100.0 * v:.1f}" for v in shares[key].shares()]]
            for key in ([None] if None in shares else []) + rounds]
    chart = ([html.figure(figures.class_balance(counts, record.labels, ylabel="% of painted pixels"), "pixel-balance",
                          "Classes of the painted pixels in the masks of the images the strategy picked, per round "
                          "(% of the round's painted pixels)")] if counts[record.strategy] else [])
    return [
        *chart,
        html.table("pixel-share", ["picked in", "images", *[f"{c} %" for c in record.labels]], rows),
        html.note("Per group of images, each class's share of the painted pixels (ignore pixels left out; several "
                  "annotators' masks of an image are averaged). A strategy that hunts uncertain pixels shifts the "
                  "share towards thin and small classes; compare with the seed masks."),
        drawn_note([record]),
    ]


def picked_in_words(key: int | None, drawn: dict[int, str]) -> str:
    """A pixel-balance row's group: the seed masks, a round, or a round whose images were drawn
    at random (evaluation, cold start), so no strategy's picks (trial 14 F3)."""
    if key is None:
        return "seed masks"
    if key in drawn:
        return f"round {key} ({drawn[key].replace('_', ' ')}, drawn at random)"
    return f"round {key}"


def _heatmap_figure(row: HeatmapRow, name_prefix: str = "heatmap") -> str:
    """One embedded heatmap PNG with its caption; ``name_prefix`` keeps figure names unique on a
    page showing several campaigns' heatmaps (an experiment's: ``heatmap-<strategy>``)."""
    words = html.score_words
    caption = (f"Round {row.round_index}, rank {row.rank + 1}: {row.uri} · score {words(row.score)} · "
               f"{row.map_name} mean {words(row.mean)}, max {words(row.max)}, top-{row.q:g} mean "
               f"{words(row.top_q_mean)}")
    try:
        data = Path(row.path).read_bytes()
    except OSError as error:
        return html.note(f"{caption}: its heatmap is not readable at {row.path} any more "
                         f"({error.strerror or error}); the table keeps its statistics.")
    return html.figure(base64.b64encode(data).decode("ascii"), f"{name_prefix}-round-{row.round_index}-rank-{row.rank + 1}",
                       caption)


def _heatmaps(engine: Engine, campaign_id: int, record: CampaignRecord, per_round: int) -> list[str]:
    rows = heatmap_rows(engine, campaign_id)
    if not rows:
        return [html.note("No heatmap stored yet: each active round writes one per selected image once it has "
                          "selected them.")]
    rounds = sorted({r.round_index for r in rows})
    shown = [r for r in rows if r.round_index in rounds[-HEATMAP_ROUNDS:] and r.rank < per_round]
    last = min(len(rounds), HEATMAP_ROUNDS)
    parts = [html.note(
        f"Up to {per_round} highest-ranked picks per round (--gallery-size), of the last {last} "
        f"round{'s' if last != 1 else ''} with heatmaps: the image, the predicted mask, the scored per-pixel map with its colour bar "
        "(entropy and BALD in nats, variance in probability²), and the max-softmax map for comparison. Each PNG is the "
        "file the round wrote, embedded; the table lists every heatmap with its path.")]
    parts += [_heatmap_figure(r) for r in shown]
    parts.append(html.table(
        "heatmaps", ["round", "rank", "sample", "map", "score", "map mean", "map max", "top-q mean", "q", "file"],
        [[str(r.round_index), str(r.rank + 1), r.uri, r.map_name,
          *map(html.score_words, (r.score, r.mean, r.max, r.top_q_mean)), f"{r.q:g}", r.path] for r in rows]))
    return parts


def _calibration(record: CampaignRecord) -> list[str]:
    """The per-pixel temperature scaling of the rounds that stored one
    (``campaign.segmentation_calibration``): classification's table and reliability diagrams,
    every pixel a sample; without any, one sentence per reason."""
    if any(r.calibration for r in record.rounds):
        return [*uncertainty.campaign_calibration(record), html.note(
            "Per pixel: T is fitted on the labeled pixels of images held out from training (\"held out\" counts "
            "images; the guard's folds split by image), and before / after are the pixels of the test (or "
            "evaluation) images, at most 1,024 per image. The pixel ECE of the learning curve and the rounds table "
            "above is the uncalibrated model's, one deterministic pass over every pixel.")]
    reasons = sorted({why for r in record.rounds if (why := uncertainty.calibration_absence(r, record.config))})
    return [html.note("No temperature scaling in any round, so there is no reliability diagram: "
                      + "; ".join(reasons) + ". The pixel ECE above (15 confidence bins over every measured pixel) "
                      "is the uncalibrated model's.")]


def campaign_page(engine: Engine, campaign_id: int, record: CampaignRecord, targets: Sequence[float] | None,
                  gallery_size: int) -> str:
    """The whole HTML page of segmentation campaign ``record``; ``targets`` are mIoU values
    (default :data:`DEFAULT_TARGETS`), ``gallery_size`` the heatmaps embedded per round."""
    from activelabel.campaign.summary import data_counts
    from activelabel.report.build import _timings

    targets = tuple(targets or DEFAULT_TARGETS)
    body = [
        uncertainty.latest_round_summary(engine, campaign_id, record, _measures, unit="masks",
                                         picks_measure="mean-pixel BALD"),
        html.section("Settings", html.table("settings", ["setting", "value"], settings_rows(record)),
                     anchor="settings"),
        html.section("Learning curve", *_learning_curves(record), anchor="learning-curves"),
        html.section("Data", html.paragraph(data_counts(engine, record.name).describe()), anchor="data"),
        html.section("Rounds", *_rounds_tables(engine, record, targets), anchor="rounds-section"),
        html.section("Calibration", *_calibration(record), anchor="calibration"),
        html.section("Uncertainty of pool and selected images",
                     *uncertainty.score_histograms(engine, campaign_id, record, scores="image scores",
                                                   detail=" (the per-pixel map aggregated per image)"),
                     *uncertainty.campaign_decomposition(engine, campaign_id, record),
                     html.note("For segmentation, each image's total, aleatoric and epistemic uncertainty is the mean "
                               "over its pixels of the per-pixel predictive entropy, expected entropy and BALD; the "
                               "image score the strategy ranks by is its map aggregated as the settings say."),
                     anchor="uncertainty"),
        html.section("Heatmaps of the selected images", *_heatmaps(engine, campaign_id, record, gallery_size),
                     anchor="heatmaps-section"),
        html.section("Pixel balance of the picks", *_pixel_balance(engine, campaign_id, record),
                     anchor="class-balance-section"),
        html.section("Timings per round", _timings({record.strategy: [record]},
                                                   "Seconds per round: training, evaluating (the yardstick and the "
                                                   "temperature), scoring the pool, selecting"),
                     anchor="timings-section"),
    ]
    return html.page(f"Campaign {record.name} (segmentation)", body)
