"""Assemble a report — of an experiment (strategies × seeds) or of one campaign — into HTML.

Everything comes from the database (rounds, scores, selections, annotations, each round's
stored calibration and uncertainty decomposition); thumbnails come from the campaign's image
store. Nothing is trained or predicted here. A figure without data is replaced by a sentence
saying why, never drawn as empty axes.
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from activelabel.campaign.summary import TRAINED_ON_NOTE
from activelabel.campaign.training_terms import COLUMNS_NOTE as TRAINING_COLUMNS_NOTE, training_cells
from activelabel.report import density, figures, html, uncertainty
from activelabel.report.curves import (
    aulc,
    common_points,
    every_seed_points,
    labels_to_target,
    mean_curve,
    paired_t_test,
    shared_span,
    within,
)
from activelabel.report.data import CampaignRecord, load_campaign, yardstick
from activelabel.report.settings import campaign_settings_rows
from activelabel.spread import mean_std_text

DEFAULT_TARGETS = (0.80, 0.90, 0.95)
#: How a report reads one run's learning curve: (labels, values) of its complete active rounds.
CurveOf = Callable[[CampaignRecord], tuple[list[int], list[float]]]
METRICS = (("accuracy", "test accuracy"), ("nll", "test NLL (nats)"), ("ece", "test ECE"))
UNIT_INTERVAL = {"accuracy", "ece"}  # metrics in [0, 1]: their curves' y axis starts at 0


def metrics(split: str = "test") -> tuple[tuple[str, str], ...]:
    """:data:`METRICS` named by what they are measured on (``split``: "test" or "evaluation")."""
    return tuple((key, label.replace("test", split, 1)) for key, label in METRICS)
# "evaluate": measuring the round's model on the yardstick and fitting its temperature, apart
# from "train" (rounds stored before it existed counted it in "train").
STEPS = ("train", "evaluate", "score", "select")
BASELINE = "random"

TEST_EXPLANATION = (
    "Gain over random: for each seed, the area under the accuracy curve (AULC, normalised by "
    "the label span, so it is the curve's mean accuracy) of the strategy minus that of random "
    "on the same seed — same initial labels, same test split — over the label counts both "
    "measured. The p-value is a two-sided paired t-test on these per-seed differences. Why not "
    "Wilcoxon's signed-rank test: with n seeds its smallest possible two-sided p-value is "
    "2/2^n (0.25 for 3 seeds, 0.0625 for 5), so with 3 to 5 seeds it can never reach 0.05. The "
    "t-test can, assuming the per-seed differences are roughly normal; with so few seeds, read "
    "it as evidence, not proof, and add seeds when it matters."
)


@dataclass(frozen=True)
class ReportInfo:
    kind: str  # "experiment" or "campaign"
    path: Path
    campaigns: int


def write_report(engine: Engine, name: str, path: str | Path, *, targets: Sequence[float] | None = None,
                 gallery_size: int = 8) -> ReportInfo:
    """Write the report of experiment ``name`` (or, if none, campaign ``name``) to ``path``.

    ``targets``: test accuracies to count the labels needed for (default 0.8, 0.9, 0.95); for a
    segmentation campaign or experiment they are mIoU values (default 0.6, 0.7, 0.8).

    Raises ``ConfigError`` for a target outside (0, 1] and ``CampaignStateError`` when neither
    an experiment nor a campaign has that name.
    """
    from activelabel.campaign.experiment import experiment_arms, find_experiment
    from activelabel.errors import CampaignStateError
    from activelabel.storage import Campaign, session_scope

    path = Path(path)
    check_targets(targets)
    settings = find_experiment(engine, name)
    if settings is not None:
        records = [load_campaign(engine, arm.campaign_id) for arm in experiment_arms(engine, name)]
        if records and all(r.task == "segmentation" for r in records):
            from activelabel.report import segmentation, segmentation_experiment

            text = segmentation_experiment.experiment_page(
                engine, name, settings, records, tuple(targets or segmentation.DEFAULT_TARGETS), gallery_size)
        else:
            text = experiment_page(engine, name, settings, records, tuple(targets or DEFAULT_TARGETS), gallery_size)
        kind = "experiment"
    else:
        with session_scope(engine) as session:
            campaign_id = session.scalar(select(Campaign.id).where(Campaign.name == name))
        if campaign_id is None:
            from activelabel.storage.database import describe_url

            raise CampaignStateError(
                f"no experiment or campaign named {name!r} in {describe_url(engine.url.render_as_string(hide_password=False))}; "
                "`activelabel status` lists its campaigns (an experiment's are named EXPERIMENT-STRATEGY-seedN), or "
                "name the campaign or experiment file, or pass its --database-url")
        records = [load_campaign(engine, campaign_id)]
        if records[0].task == "segmentation":
            from activelabel.report import segmentation

            text = segmentation.campaign_page(engine, campaign_id, records[0], targets, gallery_size)
        else:
            text = campaign_page(engine, campaign_id, records[0], tuple(targets or DEFAULT_TARGETS), gallery_size)
        kind = "campaign"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return ReportInfo(kind, path, len(records))


def check_targets(targets: Sequence[float] | None) -> None:
    """Raise ``ConfigError`` unless every target is a fraction in (0, 1] (an accuracy or an
    mIoU): ``--target 90`` or ``1.5`` would silently never be reached."""
    from activelabel.errors import ConfigError

    for target in targets or ():
        if not (isinstance(target, (int, float)) and 0.0 < target <= 1.0):
            # One hint, not two (trial 14 F4): a percentage gets its own fraction, anything else
            # the general example.
            hint = (f"; for {target:g} % give --target {target / 100:g}" if isinstance(target, (int, float))
                    and 2.0 <= target <= 100.0 else ", e.g. --target 0.9 for 90 %")
            raise ConfigError(
                f"--target {target:g} is not a test accuracy (or mIoU): give a fraction in (0, 1]{hint}")


def by_strategy(records: Sequence[CampaignRecord]) -> dict[str, list[CampaignRecord]]:
    """Records grouped by strategy, random first (the baseline), then by name."""
    groups: dict[str, list[CampaignRecord]] = {}
    for r in sorted(records, key=lambda r: (r.strategy != BASELINE, r.strategy, r.seed)):
        groups.setdefault(r.strategy, []).append(r)
    return groups


def accuracy_curve(record: CampaignRecord) -> tuple[list[int], list[float]]:
    """A classification run's learning curve: (labels, test accuracy)."""
    return record.curve("accuracy")


def labels_to_target_rows(groups: dict[str, list[CampaignRecord]], targets: Sequence[float],
                          per_seed: bool = True, curve: CurveOf = accuracy_curve) -> list[list[str]]:
    """Per strategy: labels at which the mean ``curve`` over seeds (default: accuracy; a
    segmentation experiment passes mIoU) first reaches each target, with the per-seed figures
    after it (``per_seed``; a campaign page, one run and no seeds to speak of, passes False:
    the labels alone)."""
    rows = []
    for strategy, runs in groups.items():
        curves = [curve(r) for r in runs]
        xs, mean, _, count = mean_curve(curves)
        points = every_seed_points(curves, count)
        full = [(xs[i], mean[i]) for i in points]
        row = [strategy]
        for target in targets:
            reached = labels_to_target([x for x, _ in full], [m for _, m in full], target)
            each = [labels_to_target(*c, target) for c in curves]
            seeds = ", ".join("—" if n is None else str(n) for n in each)
            if reached is not None:
                cell = str(reached)
            elif full and len(full) < len(xs):
                cell = f"not reached by {full[-1][0]} (where all {count[points[0]]} seeds have run)"
            else:
                cell = "not reached"
            row.append(cell + (f" (seeds: {seeds})" if per_seed else ""))
        rows.append(row)
    return rows


def aulc_section(groups: dict[str, list[CampaignRecord]], title: str, column: str, explanation: str,
                 curve: CurveOf = accuracy_curve) -> str:
    """The experiment page's section of :func:`aulc_rows` on ``curve`` (``column`` names its AULC),
    with the paired test explained, and a note when there is no random arm to gain over."""
    return html.section(
        title,
        html.table("aulc", ["strategy", "seeds", column, "gain over random", "t", "p (paired t-test)", "pairs"],
                   aulc_rows(groups, curve=curve)),
        aulc_span_note(groups, curve),
        html.paragraph(explanation),
        *([] if BASELINE in groups else [html.note(
            f"This experiment has no {BASELINE!r} arm, so there is no gain over random to test; add "
            f"{BASELINE!r} to --strategies (a rerun adds only the missing campaigns).")]),
        anchor="aulc-section",
    )


def aulc_rows(groups: dict[str, list[CampaignRecord]], curve: CurveOf = accuracy_curve) -> list[list[str]]:
    """Per strategy: AULC of ``curve`` (default accuracy; segmentation: mIoU), mean ± std over
    seeds, over the span every campaign of the experiment has run (:func:`shared_span`, so rows
    compare like with like), and the paired t-test of its per-seed gain over random on the same
    seed (over the label counts both measured)."""
    baseline = {r.seed: r for r in groups.get(BASELINE, [])}
    span = shared_span([curve(r) for runs in groups.values() for r in runs])
    rows = []
    for strategy, runs in groups.items():
        cut = [within(curve(r), span) for r in runs] if span is not None else []
        own = [aulc(*c) for c in cut if c[0]]
        mean = sum(own) / len(own) if own else math.nan
        std = (sum((v - mean) ** 2 for v in own) / (len(own) - 1)) ** 0.5 if len(own) > 1 else 0.0
        gain, t, p, n = "", "", "", ""
        if strategy != BASELINE and baseline:
            pairs = []
            for r in runs:
                if r.seed in baseline:
                    a, b = common_points(curve(r), curve(baseline[r.seed]))
                    if a[0]:
                        pairs.append((aulc(*a), aulc(*b)))
            test = paired_t_test([p_[0] for p_ in pairs], [p_[1] for p_ in pairs])
            n = str(test.n)
            if test.n:
                gain = f"{test.mean_difference:+.4f}"
            t = "" if test.t is None else f"{test.t:.2f}"
            p = "n/a (needs 2+ seeds with spread)" if test.p_value is None else f"{test.p_value:.3g}"
        rows.append([strategy, str(len(own)), mean_std_text(mean, std, len(own)) if own else "", gain, t, p, n])
    return rows


def aulc_span_note(groups: dict[str, list[CampaignRecord]], curve: CurveOf = accuracy_curve) -> str:
    """Where some campaign has run past the shared span, the note saying the AULC column is cut
    to it (and where to); nothing when every campaign covers the same labels."""
    curves = [curve(r) for runs in groups.values() for r in runs]
    span = shared_span(curves)
    longest = max((max(c[0]) for c in curves if c[0]), default=None)
    if span is None or longest is None or longest <= span[1]:
        return ""
    return html.note(
        f"The AULC column covers {span[0]}–{span[1]} labels, the span every campaign of the experiment "
        f"has run (some have run to {longest}): a longer curve would add its later, higher points, so "
        "every row is cut to the same labels. The gain over random compares each seed with random's "
        "same seed over the labels both have run.")


def _gallery(record: CampaignRecord, size: int) -> str:
    from activelabel.campaign.config import CampaignConfig
    from activelabel.campaign.data import campaign_data

    active = [r.index for r in record.rounds if r.kind == "active"]
    if not active:
        return html.note("No active round has selected samples yet.")
    last = active[-1]
    picked = [p for p in record.picked if p.round_index == last][:size]
    try:
        store = campaign_data(CampaignConfig.from_dict(record.config)).store
        # random's score is its uniform draw: the order it picked in, not an uncertainty (trial 17 F7).
        score = "random draw" if record.strategy == "random" else "score"
        items = [(base64.b64encode(store.png(p.uri)).decode("ascii"),
                  f"#{p.rank + 1} {score} {html.score_words(p.score)}"
                  + ("" if p.epistemic is None else f" · BALD {html.score_words(p.epistemic)}")
                  + f" · label {p.label or '?'} · model {p.predicted or '?'}")
                 for p in picked]
    except Exception as error:  # the data moved away: the report still shows everything else
        return html.note(f"Images of {record.name} are not readable here ({error}).")
    return html.note(f"{record.name}, round {last}: the {len(items)} highest-ranked selections.") + html.gallery(items)


def _timing_series(records: Sequence[CampaignRecord]) -> dict[str, dict[int, float]]:
    sums: dict[str, dict[int, list[float]]] = {}
    for r in records:
        for row in r.rounds:
            for step in STEPS:
                if step in row.timings:
                    sums.setdefault(step, {}).setdefault(row.index, []).append(float(row.timings[step]))
    return {step: {i: sum(v) / len(v) for i, v in rows.items()} for step, rows in sums.items()}


def _timing_rows(groups: dict[str, list[CampaignRecord]]) -> list[list[str]]:
    rows = []
    for strategy, runs in groups.items():
        series = _timing_series(runs)
        cells = []
        for step in STEPS:
            values = list(series.get(step, {}).values())
            cells.append(f"{sum(values) / len(values):.2f}" if values else "")
        rows.append([strategy, *cells])
    return rows


def drawn_kinds(record: CampaignRecord) -> dict[int, str]:
    """Round index -> kind of the record's rounds that draw their batch at random (evaluation,
    cold start) instead of letting the strategy pick it."""
    rows = [*record.rounds, *([record.waiting] if record.waiting is not None else [])]
    return {r.index: r.kind for r in rows if r.kind != "active"}


def _class_counts(records: Sequence[CampaignRecord]) -> dict[int, Counter]:
    """Classes of the strategy's picks per round: the random draws of evaluation and cold-start
    rounds are left out, they are no strategy's picks (trial 14 F3)."""
    counts: dict[int, Counter] = {}
    for r in records:
        drawn = drawn_kinds(r)
        for p in r.picked:
            if p.round_index not in drawn:
                counts.setdefault(p.round_index, Counter())[p.label or "unlabeled"] += 1
    return counts


def drawn_note(records: Sequence[CampaignRecord]) -> str:
    """The sentence naming the rounds the class balance leaves out, and why; "" when none."""
    drawn = sorted({(i, kind) for r in records for i, kind in drawn_kinds(r).items()
                    if any(p.round_index == i for p in r.picked)})
    if not drawn:
        return ""
    listed = ", ".join(f"round {i} ({kind.replace('_', ' ')})" for i, kind in drawn)
    return html.note(f"Left out of the chart: {listed}: their samples were drawn at random (the evaluation set, "
                     "never trained on, or a cold-start batch labeled before a model could score the pool), not "
                     "picked by the strategy. Their labels are in `activelabel export`.")


def settings_rows(settings: dict, most_labeled: int | None = None) -> list[list[str]]:
    """An experiment's settings table: its strategies and seeds, then the shared campaign
    settings that apply and are set (:mod:`activelabel.report.settings`): an own-data
    experiment shows its pool, test set and evaluation size, not the built-in datasets'
    ``test_fraction`` or ``initial_labeled``; an unset (None) setting is left out."""
    from activelabel.report.settings import ROUND_KEYS, calibrate_rows, data_keys, key_rows, model_keys

    shared = settings.get("campaign", {})
    rows = [["strategies", ", ".join(settings.get("strategies", []))],
            ["seeds", ", ".join(str(s) for s in settings.get("seeds", []))]]
    return (rows + key_rows(shared, [*data_keys(shared), *ROUND_KEYS, *model_keys(shared)])
            + calibrate_rows(shared, most_labeled, task=shared.get("task") or "classification"))


def most_labeled(records: Sequence[CampaignRecord]) -> int:
    """The most labels any round of ``records`` had (0 without rounds): whether calibration ran."""
    return max((r.labeled or 0 for record in records for r in record.rounds), default=0)


def _settings_table(rows: list[list[str]]) -> str:
    return html.table("settings", ["setting", "value"], rows)


def _learning_curves(groups: dict[str, list[CampaignRecord]], several: bool, split: str = "test") -> list[str]:
    """A learning-curve figure per metric (named by ``split``, what it is measured on), or a
    sentence where no round measured it."""
    parts = []
    for metric, label in metrics(split):
        curves = {s: [r.curve(metric) for r in runs] for s, runs in groups.items()}
        if not any(xs for runs in curves.values() for xs, _ in runs):
            parts.append(html.note(
                f"No {label} curve: no complete active round measured it yet (rounds without a model — cold start, "
                "evaluation — and campaigns without a labeled test or evaluation split measure nothing)."))
            continue
        band = " (mean ± std over seeds)" if several else ""
        parts.append(html.figure(figures.learning_curves(curves, label, f"{label} against labels{band}",
                                                         unit_interval=metric in UNIT_INTERVAL),
                                 f"learning-curve-{metric}",
                                 f"Learning curve: {label}" + (", mean ± one std over seeds" if several else "")))
    return parts


def _class_balance(groups: dict[str, list[CampaignRecord]], classes: Sequence[str], caption: str,
                   across: str = "") -> str:
    """The class-balance figure of the strategies' picks, and the note on the random draws left
    out. ``across``: the figure titles' suffix (an experiment's " (all seeds)")."""
    balance = {s: counts for s, runs in groups.items() if (counts := _class_counts(runs))}
    drawn = drawn_note([r for runs in groups.values() for r in runs])
    if not balance:
        return (html.note("No strategy has picked a sample yet, so there is no class balance to show.") + drawn
                if drawn else html.note("No sample has been selected yet, so there is no class balance to show."))
    return html.figure(figures.class_balance(balance, [*classes, "unlabeled"], across=across),
                       "class-balance", caption) + drawn


def _timings(groups: dict[str, list[CampaignRecord]], caption: str) -> str:
    series = {s: t for s, runs in groups.items() if (t := _timing_series(runs))}
    if not series:
        return html.note("No complete round has recorded its timings yet.")
    return html.figure(figures.timings(series, STEPS), "timings", caption)


def _campaign_aulc(record: CampaignRecord) -> str:
    xs, ys = record.curve("accuracy")
    if not xs:
        return html.note(f"No area under the learning curve: no active round measured the "
                         f"{yardstick(record.config)} accuracy yet.")
    return html.table("aulc", ["strategy", "labels", "points", "AULC"],
                      [[record.strategy, f"{xs[0]}–{xs[-1]}", str(len(xs)), f"{aulc(xs, ys):.4f}"]],
                      caption="Area under the accuracy curve over the label span (its mean accuracy)")


def experiment_page(engine: Engine, name: str, settings: dict, records: Sequence[CampaignRecord],
                    targets: Sequence[float], gallery_size: int) -> str:
    groups = by_strategy(records)
    classes = records[0].labels if records else []
    body = [html.section("Settings", _settings_table(settings_rows(settings, most_labeled(records))),
                         anchor="settings")]
    body.append(html.section("Learning curves", *_learning_curves(groups, several=True), anchor="learning-curves"))
    body.append(html.section(
        "Labels needed to reach a test accuracy",
        html.table("labels-to-target", ["strategy", *[f"accuracy ≥ {t:g}" for t in targets]],
                   labels_to_target_rows(groups, targets)),
        html.note("Read on the mean curve over seeds, at the label counts every seed of the strategy has "
                  "reached: the first measured label count at or above the target (no interpolation). "
                  "Per-seed figures in brackets; — : not reached."),
        anchor="labels-to-target-section",
    ))
    body.append(aulc_section(groups, "Area under the learning curve and gain over random", "AULC (mean ± std)",
                             TEST_EXPLANATION))
    body.append(html.section("Calibration: temperature scaling", *uncertainty.experiment_calibration(groups),
                             anchor="calibration"))
    body.append(html.section("Uncertainty decomposition: pool against selected",
                             *uncertainty.experiment_decomposition(engine, groups), anchor="decomposition"))
    body.append(html.section("Feature density: picks flagged out of distribution",
                             *density.experiment_density(engine, groups), anchor="density"))
    body.append(html.section(
        "Class balance of the picks",
        _class_balance(groups, classes, "Classes (their annotated labels) of the samples each strategy picked, per round",
                       across=" (all seeds)"),
        anchor="class-balance-section",
    ))
    body.append(html.section("Selected samples", *[_gallery(runs[0], gallery_size) for runs in groups.values()],
                             anchor="gallery"))
    body.append(experiment_timings_section(groups))
    return html.page(f"Experiment {name}", body)


def experiment_timings_section(groups: dict[str, list[CampaignRecord]]) -> str:
    """An experiment page's per-round timings: the chart and the table of mean seconds over seeds."""
    return html.section(
        "Timings per round",
        _timings(groups, "Mean seconds per round over seeds: training, evaluating (the yardstick and the "
                         "temperature), scoring the pool, selecting"),
        html.table("timings-table", ["strategy", *[f"{s} (mean s per round)" for s in STEPS]], _timing_rows(groups)),
        anchor="timings-section",
    )


def campaign_page(engine: Engine, campaign_id: int, record: CampaignRecord, targets: Sequence[float],
                  gallery_size: int) -> str:
    groups = {record.strategy: [record]}
    body = [uncertainty.latest_round_summary(engine, campaign_id, record),
            html.section("Settings", _settings_table(campaign_settings_rows(
                record.strategy, record.labels, record.config, most_labeled([record]))), anchor="settings")]
    body.append(html.section("Learning curve", *_learning_curves(groups, several=False, split=yardstick(record.config)),
                             anchor="learning-curves"))
    from activelabel.campaign.summary import data_counts

    body.append(html.section("Data", html.paragraph(data_counts(engine, record.config["name"]).describe()),
                             anchor="data"))
    from activelabel.report.agreement import agreement_section

    agreement = agreement_section(engine, record.name)  # several annotators per task only
    if agreement is not None:
        body.append(agreement)
    rows = [[str(r.index), r.kind.replace("_", " "), r.trained_on_cell(),
             *["" if getattr(r, m) is None else f"{getattr(r, m):.4f}" for m, _ in METRICS],
             *training_cells(r.training),
             *[f"{r.timings[s]:.2f}" if s in r.timings else "" for s in STEPS]] for r in record.rounds]
    body.append(html.section(
        "Rounds",
        html.table("rounds", ["round", "kind", "trained on", "accuracy", "NLL", "ECE", "epochs", "steps",
                              *[f"{s} s" for s in STEPS]], rows),
        html.note(f"{TRAINED_ON_NOTE} {TRAINING_COLUMNS_NOTE}"),
        html.table("labels-to-target", ["strategy", *[f"accuracy ≥ {t:g}" for t in targets]],
                   labels_to_target_rows(groups, targets, per_seed=False),
                   caption="Labels needed to reach an accuracy (the first measured round at or above it)"),
        _campaign_aulc(record),
        anchor="rounds-section",
    ))
    body.append(html.section("Calibration: temperature scaling", *uncertainty.campaign_calibration(record),
                             anchor="calibration"))
    body.append(html.section("Uncertainty of pool and selected samples",
                             *uncertainty.score_histograms(engine, campaign_id, record),
                             *uncertainty.campaign_decomposition(engine, campaign_id, record),
                             anchor="uncertainty"))
    body.append(html.section("Feature density and out-of-distribution samples",
                             *density.campaign_density(engine, campaign_id, record), anchor="density"))
    body.append(html.section(
        "Class balance of the picks",
        _class_balance(groups, record.labels, "Classes (their annotated labels) of the samples picked, per round"),
        anchor="class-balance-section",
    ))
    body.append(html.section("Selected samples", _gallery(record, gallery_size), anchor="gallery"))
    body.append(html.section(
        "Timings per round",
        _timings(groups, "Seconds per round: training, evaluating (the yardstick and the temperature), scoring "
                         "the pool, selecting"),
        anchor="timings-section",
    ))
    return html.page(f"Campaign {record.name}", body)
