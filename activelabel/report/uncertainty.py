"""The report's calibration and uncertainty-decomposition sections (issue 12's figures).

Everything comes from what each round stored: ``Round.calibration`` (the temperature fitted on
held-out labels, accuracy / NLL / Brier / ECE and the reliability bins before and after scaling
on the test or evaluation split) and the per-sample ``Score.total / aleatoric / epistemic``
columns. Nothing is refitted or rescored. A round without them gets a sentence saying why,
never an empty plot.
"""

from __future__ import annotations

import math

from collections.abc import Callable, Mapping, Sequence

from sqlalchemy import Engine

from activelabel.campaign.calibration_terms import describe_predictor, kept_mixture_temperature
from activelabel.report import figures, html
from activelabel.report.curves import mean_curve
from activelabel.spread import mean_std_text
from activelabel.report.data import (
    PARTS, CampaignRecord, DecompositionMeans, RoundRow, decomposition_means, round_decomposition,
    round_score_values, yardstick,
)

RELIABILITY_ROUNDS = 6  # reliability diagrams drawn: the last N calibrated rounds
DECOMPOSITION_ROUNDS = 3  # pool-vs-selected histograms drawn: the last N rounds with a decomposition
CALIBRATION_SERIES = {
    "ece_before": ("ece", "before"), "ece_after": ("ece", "after"),
    "nll_before": ("nll", "before"), "nll_after": ("nll", "after"),
    "temperature": ("temperature", None),
}


def calibration_absence(row: RoundRow, config: Mapping) -> str | None:
    """Why round ``row`` has no calibration figures (None: it has them), in words for the page
    (the same words ``activelabel status CAMPAIGN --round N`` prints)."""
    from activelabel.campaign.uncertainty_report import calibration_absence as why

    return why(row.kind, row.labeled, row.calibration, config)


def _rounds_sentences(rows: Sequence[tuple[int, str]], what: str) -> list[str]:
    """(round index, reason) pairs grouped by reason, one sentence each: "Rounds 1, 2: no {what} — reason."."""
    grouped: dict[str, list[str]] = {}
    for index, reason in rows:
        grouped.setdefault(reason, []).append(str(index))
    return [html.note(f"Round{'s' if len(indices) > 1 else ''} {', '.join(indices)}: no {what} — {reason}.")
            for reason, indices in grouped.items()]


def _percent_below(share: float) -> str:
    """A share in percent rounded down (99.6 % of the pool below is not "above 100 %")."""
    return f"{math.floor(share):.0f}"


def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _series(records: Sequence[CampaignRecord]) -> dict[str, list]:
    return {name: [r.calibration_curve(key, when) for r in records] for name, (key, when) in CALIBRATION_SERIES.items()}


def _has_points(series: Mapping[str, Mapping[str, Sequence]]) -> bool:
    return any(curve[0] for by_name in series.values() for curves in by_name.values() for curve in curves)


def campaign_calibration(record: CampaignRecord, last: int = RELIABILITY_ROUNDS) -> list[str]:
    """The campaign page's calibration: ECE, NLL and temperature against labels, a table of every
    round's stored figures before/after temperature scaling (or why none), and the reliability
    diagrams of the last ``last`` calibrated rounds."""
    series = {record.strategy: _series([record])}
    parts: list[str] = []
    if _has_points(series):
        parts.append(html.figure(
            figures.calibration_curves(series), "calibration-curves",
            "Test ECE and NLL before (dashed) and after (solid) temperature scaling, and the fitted temperature, "
            "against labels"))
    rows, absent = [], []
    for r in record.rounds:
        why = calibration_absence(r, record.config)
        c = r.calibration or {}
        rows.append([str(r.index), r.kind.replace("_", " "), "" if r.labeled is None else str(r.labeled),
                     str(c.get("validation_size", "")), _fmt(c.get("temperature"), 3),
                     _fmt(c.get("mixture_temperature"), 3),
                     *[_fmt(r.calibrated(when, key)) for key in ("accuracy", "nll", "brier", "ece")
                       for when in ("before", "after")], why or ""])
        if why:
            absent.append((r.index, why))
    parts.append(html.table(
        "calibration", ["round", "kind", "labels", "held out", "T", "T2", "accuracy before", "accuracy after",
                        "NLL before", "NLL after", "Brier before", "Brier after", "ECE before", "ECE after",
                        "why none"], rows))
    parts.append(html.note(
        "Temperature scaling (Guo et al. 2017): T is fitted on labels held out from training; T2, for a sampled "
        "predictor, rescales the log of the averaged distribution (1: not kept; empty: rounds stored before it "
        "existed). Before and after are "
        "measured on the test (or evaluation) split, for the predictor T was fitted for (with MC dropout: the mean "
        "of the round's passes, which acquisition reads). ECE uses 15 equal-width confidence bins. The learning "
        "curves and the rounds table show one deterministic pass before scaling, so their accuracy and ECE "
        "differ from the columns here."))

    measured = [r for r in record.rounds if calibration_absence(r, record.config) is None]
    for r in measured[-last:]:
        c = r.calibration
        parts.append(html.figure(
            figures.reliability_diagram(c["before"], c["after"], float(c["temperature"]),
                                        f"round {r.index} · {r.labeled} labels · {c['validation_size']} held out",
                                        mixture_temperature=kept_mixture_temperature(c) or 1.0),
            f"reliability-round-{r.index}",
            f"Round {r.index}: reliability diagram before and after temperature scaling (T = {c['temperature']:.3f}"
            f"{_mixture_clause(c)}, "
            f"fitted for the {describe_predictor(c.get('predictor'))})"))
    if len(measured) > last:
        parts.append(html.note(f"Reliability diagrams of the last {last} calibrated rounds; the table has every "
                               "round's figures."))
    parts.extend(_rounds_sentences(absent, "calibration"))
    return parts


def _mixture_clause(calibration: dict, lead: str = ", mixture T2 = ") -> str:
    """``lead`` and T2 (", mixture T2 = 0.771") when the round kept a mixture temperature, else ""."""
    t2 = kept_mixture_temperature(calibration)
    return "" if t2 is None else f"{lead}{t2:.3f}"


def _mean_std(values: Sequence[float]) -> str:
    """"mean ± sample std" (the mean alone for one value), as the learning curves' bands compute it."""
    _, mean, std, _ = mean_curve([([0] * len(values), list(values))])
    return mean_std_text(mean[0], std[0], len(values))


def experiment_calibration(groups: Mapping[str, Sequence[CampaignRecord]]) -> list[str]:
    """The experiment page's calibration: per strategy, ECE and NLL before/after temperature
    scaling and the temperature against labels (mean ± std over seeds), and the same numbers
    as a table per label count; or, when no round stored one, why not."""
    series = {s: _series(runs) for s, runs in groups.items()}
    if not _has_points(series):
        reasons = []
        for runs in groups.values():
            for record in runs:
                reasons += [why for r in record.rounds if (why := calibration_absence(r, record.config))]
        reasons_by = sorted(set(reasons))
        return [html.note("No round of this experiment stored a calibration, so there is no calibration figure: "
                          + ("; ".join(reasons_by) if reasons_by else "no complete round yet") + ".")]
    rows = []
    for strategy, runs in groups.items():
        labels = sorted({n for r in runs for n in r.calibration_curve("temperature")[0]})
        for n in labels:
            cells = []
            for key, when in (("ece", "before"), ("ece", "after"), ("nll", "before"), ("nll", "after"),
                              ("temperature", None), ("mixture_temperature", None)):
                values = [v for r in runs for x, v in zip(*r.calibration_curve(key, when)) if x == n]
                cells.append(_mean_std(values) if values else "")
            seeds = sum(1 for r in runs if n in r.calibration_curve("temperature")[0])
            rows.append([strategy, str(n), str(seeds), *cells])
    return [
        html.figure(figures.calibration_curves(series), "calibration-curves",
                    "Test ECE and NLL before (dashed) and after (solid) temperature scaling, and the fitted "
                    "temperature, against labels; mean ± one std over seeds"),
        # T2 too, as the campaign page's table: for a sampled predictor (MC dropout, a segmentation
        # round's per-pixel scaling) most of the ECE and NLL change can come from it (trial 15, F14).
        html.table("calibration-by-labels", ["strategy", "labels", "seeds", "ECE before", "ECE after",
                                             "NLL before", "NLL after", "T", "T2"], rows),
        html.note("Mean ± sample std over the seeds that stored a calibration at that label count. Rounds below "
                  "the calibration threshold store none and are left out. T is the fitted temperature; T2, for "
                  "a sampled predictor, rescales the log of the averaged distribution (1: not kept; empty: "
                  "rounds stored before it existed)."),
    ]


def _decomposition_reason(row: RoundRow) -> str:
    if row.kind == "evaluation":
        return "an evaluation round orders the evaluation split at random, without a model"
    if row.kind == "cold_start":
        return "a cold-start round scores the pool at random, without a model"
    return "its scores carry no decomposition (scored before it was stored)"


def campaign_decomposition(engine: Engine, campaign_id: int, record: CampaignRecord,
                           last: int = DECOMPOSITION_ROUNDS) -> list[str]:
    """The campaign page's decomposition: per round, the scored pool's mean total / aleatoric /
    epistemic against the selected samples' (table), and for the last ``last`` such rounds the
    pool's distribution of each part with the selected samples placed in it."""
    means = decomposition_means(engine, campaign_id)
    parts: list[str] = []
    rows = []
    for r in record.rounds:
        m = means.get(r.index)
        if m is None:
            continue
        rows.append([str(r.index), str(m.pool.count), *[_fmt(m.pool.part(p)) for p in PARTS],
                     "" if m.selected is None else str(m.selected.count),
                     *[_fmt(None if m.selected is None else m.selected.part(p)) for p in PARTS]])
    for index in [r.index for r in record.rounds if r.index in means][-last:]:
        split = round_decomposition(engine, campaign_id, index)
        if split is None:
            continue
        where = split.percentile("epistemic")
        sits = "" if where is None else (f"; the selected samples' median epistemic uncertainty is above "
                                         f"{_percent_below(where)} % of the pool")
        parts.append(html.figure(
            figures.decomposition_histograms(split.pool, split.selected, PARTS,
                                             f"round {index}: pool against selected"),
            f"decomposition-round-{index}",
            f"Round {index}: total, aleatoric and epistemic uncertainty (nats) of the scored pool, with the selected "
            f"samples in red{sits}"))
    if rows:
        parts.append(html.table("decomposition", ["round", "scored", "pool total", "pool aleatoric",
                                                  "pool epistemic", "selected", "selected total",
                                                  "selected aleatoric", "selected epistemic"], rows))
        parts.append(html.note(
            "Means in nats. total = predictive entropy; aleatoric = expected entropy of each pass (noise the model "
            "sees in the data); epistemic = total − aleatoric (BALD: what more labels can reduce). A strategy that "
            "hunts model uncertainty picks samples far above the pool's epistemic mean."))
    parts.extend(_rounds_sentences([(r.index, _decomposition_reason(r)) for r in record.rounds
                                    if r.index not in means], "uncertainty decomposition"))
    return parts


def experiment_decomposition(engine: Engine, groups: Mapping[str, Sequence[CampaignRecord]]) -> list[str]:
    """The experiment page's decomposition, in brief: per strategy and round, the mean over seeds
    of the scored pool's and the selected samples' total / aleatoric / epistemic uncertainty."""
    table_rows = []
    plot: dict[str, dict[str, dict[int, tuple[float, float | None]]]] = {}
    for strategy, runs in groups.items():
        per_round: dict[int, list[DecompositionMeans]] = {}
        for record in runs:
            for index, m in decomposition_means(engine, record.campaign_id).items():
                per_round.setdefault(index, []).append(m)
        for index, ms in sorted(per_round.items()):
            cells = []
            for part in PARTS:
                pool = sum(m.pool.part(part) for m in ms) / len(ms)
                chosen = [m.selected.part(part) for m in ms if m.selected is not None]
                selected = sum(chosen) / len(chosen) if chosen else None
                plot.setdefault(strategy, {}).setdefault(part, {})[index] = (pool, selected)
                cells.append(f"{pool:.4f} / {_fmt(selected)}")
            pool_e, sel_e = plot[strategy]["epistemic"][index]
            ratio = "" if sel_e is None or pool_e <= 0 else f"{sel_e / pool_e:.2f}"
            table_rows.append([strategy, str(index), str(len(ms)), *cells, ratio])
    if not table_rows:
        return [html.note("No round of this experiment stored an uncertainty decomposition (rounds without a model "
                          "— cold start, evaluation — have none).")]
    return [
        html.figure(figures.decomposition_comparison(plot, PARTS), "decomposition-comparison",
                    "Mean uncertainty (nats) of the selected samples (solid) and of the scored pool (dashed), per "
                    "round; mean over seeds"),
        html.table("decomposition-comparison", ["strategy", "round", "seeds",
                                                *[f"{p} pool / selected" for p in PARTS],
                                                "epistemic selected ÷ pool"], table_rows),
        html.note("epistemic = BALD (mutual information), aleatoric = expected entropy, total = predictive entropy; "
                  "means over each round's scored pool and over its selected samples, then over seeds. Random picks "
                  "sit near 1× the pool; an uncertainty strategy well above it."),
    ]


def latest_round_summary(engine: Engine, campaign_id: int, record: CampaignRecord,
                         measured: Callable[[RoundRow], list[str]] | None = None, *, unit: str = "labels",
                         picks_measure: str = "epistemic uncertainty") -> str:
    """One sentence on the latest complete round — what a team lead reads first: its labels
    (counted in ``unit``), what ``measured(row)`` says of it (default: test accuracy and
    calibration before → after with T), and where its picks' median ``picks_measure`` (their
    epistemic part) sits in the scored pool. The segmentation page passes its own measures."""
    waiting = _waiting_clause(record, unit) or _waits_for_labels(engine, record)
    if not record.rounds:
        return html.note("No complete round yet" + (f"; {waiting}" if waiting else "") + ".")
    r = record.rounds[-1]
    said = [f"Latest complete round: {r.index} ({r.kind.replace('_', ' ')})"]
    if r.labeled is not None:
        # the same figure as status' "trained on" column: the hold-out is no training label
        said.append(r.trained_on_clause(unit))
    said += (measured or (lambda row: _classification_measures(row, record.config)))(r)
    split = round_decomposition(engine, campaign_id, r.index)
    where = None if split is None else split.percentile("epistemic")
    if where is not None:
        said.append(f"its {len(split.selected['epistemic'])} picks' median {picks_measure} is above "
                    f"{_percent_below(where)} % of the scored pool")
    if waiting:
        said.append(waiting)
    return html.paragraph(" · ".join(said) + ".")


def _waiting_clause(record: CampaignRecord, unit: str = "labels") -> str | None:
    """What the round waiting for labels already measured, as ``activelabel status`` shows it
    ("round 4 (active), waiting for labels, trained on 40 labels, measured evaluation accuracy
    0.9330"); None when no round waits or the waiting round measured nothing (no model yet).
    Its figures stay out of the curves until the round completes."""
    w = record.waiting
    if w is None:
        return None
    if record.task == "segmentation":
        m = w.segmentation or {}
        figures_ = [f"{label} {m[key]:.4f}" for key, label in (("miou", "mIoU"), ("pixel_accuracy", "pixel accuracy"))
                    if m.get(key) is not None]
    else:
        figures_ = [] if w.accuracy is None else [f"{yardstick(record.config)} accuracy {w.accuracy:.4f}"]
    if not figures_:
        return None
    held = f" ({w.held_out:,} held out for calibration)" if w.held_out else ""
    trained = "" if w.labeled is None or w.kind != "active" else f", trained on {w.learned_from:,} {unit}{held}"
    return (f"round {w.index} ({w.kind.replace('_', ' ')}), waiting for labels{trained}, measured "
            f"{' and '.join(figures_)} (not in the curves until the round completes)")


def _waits_for_labels(engine: Engine, record: CampaignRecord) -> str | None:
    """The round waiting for labels when it measured nothing yet, with the counts ``activelabel
    status`` shows ("round 1 (evaluation) waits for labels (3 of 6 samples resolved, 6 needed)",
    from :func:`activelabel.campaign.summary.short_of_answers`); None when no round waits."""
    from activelabel.campaign.summary import short_of_answers

    w = record.waiting
    short = None if w is None else short_of_answers(engine, record.name)
    if w is None or short is None:
        return None
    return (f"round {w.index} ({w.kind.replace('_', ' ')}) waits for labels ({short.resolved} of "
            f"{short.selected} samples resolved, {short.to_complete} needed)")


def _classification_measures(r: RoundRow, config: Mapping) -> list[str]:
    said = [] if r.accuracy is None else [f"{yardstick(config)} accuracy {r.accuracy:.4f}"]
    why = calibration_absence(r, config)
    if why is None:
        # Whose ECE: the calibrated predictor's (e.g. the mean of the MC passes acquisition reads), not
        # the one deterministic pass of the accuracy before it and of the learning curves (trial 17 F4).
        said.append(f"ECE of the {describe_predictor(r.calibration.get('predictor'))} "
                    f"{r.calibrated('before', 'ece'):.4f} → {r.calibrated('after', 'ece'):.4f} with "
                    f"T = {r.calibration['temperature']:.3f}"
                    + _mixture_clause(r.calibration, " and mixture T2 = "))
    else:
        said.append(f"no calibration ({why})")
    return said


def score_histograms(engine: Engine, campaign_id: int, record: CampaignRecord, *, scores: str = "scores",
                     detail: str = "", rounds: int = 3) -> list[str]:
    """The pool's and the selected samples' strategy scores of the last ``rounds`` active
    rounds, one histogram each (``scores`` names them, ``detail`` follows the strategy in the
    caption); a sentence for a round that stored none, or when no active round exists yet."""
    parts = []
    for index in [r.index for r in record.rounds if r.kind == "active"][-rounds:]:
        pool, chosen = round_score_values(engine, campaign_id, index)
        if not pool:
            parts.append(html.note(f"Round {index} stored no scores."))
            continue
        parts.append(html.figure(
            figures.score_histogram(pool, chosen, f"round {index}: {scores} of the pool and of the selected"),
            f"uncertainty-round-{index}", f"Round {index}: {record.strategy} {scores}{detail}, pool against selected"))
    return parts or [html.note("No active round yet: no model has scored the pool.")]
