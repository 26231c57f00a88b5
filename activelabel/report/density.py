"""The report's feature-density section: how familiar the pool and the picks look to the model.

Each active classification round fits class-conditional Gaussians on the labeled set's
penultimate features (DDU, Mukhoti et al. 2021; ``campaign.density``) and stores every scored
sample's ``log q(z)`` (``score.log_density``, nats) and whether it fell below the round's OOD
threshold (``score.ood``; the threshold and how it was set in ``round.uncertainty["density"]``).
A strategy that keeps picking flagged samples spends labels on inputs unlike anything labeled:
sometimes what the model needs, sometimes junk. Nothing is refitted here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sqlalchemy import Engine

from activelabel.report import figures, html
from activelabel.campaign.uncertainty_report import density_measured as measured
from activelabel.report.data import (
    CampaignRecord,
    DensityCounts,
    density_counts,
    density_summaries,
    round_density,
)

DENSITY_ROUNDS = 3  # histograms drawn: the last N rounds with a density


def _share(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}" if whole else ""


def _absence(kind: str) -> str:
    if kind == "evaluation":
        return "an evaluation round trains no model"
    if kind == "cold_start":
        return "a cold-start round picks at random before any model is trained"
    return ("no density stored (fewer than 4 readable labeled images to fit it, or scored before densities were "
            "stored)")


#: The table's cells for a round whose density is not measured yet (see :func:`measured`).
NOT_MEASURED, NO_FIGURE = "not measured yet", "—"


def density_row(index: int, summary: Mapping, counts: DensityCounts) -> list[str]:
    """The density table's row of a round: its threshold and flagged counts, or, while the
    density is not measured yet (:func:`measured`), "not measured yet" and dashes instead of
    numbers that mean nothing."""
    c = counts
    if not measured(summary):
        return [str(index), str(summary.get("labeled", "")), str(summary.get("dim", "")), NOT_MEASURED,
                f"{summary.get('percentile', 0):g}", str(c.scored), NO_FIGURE, NO_FIGURE, str(c.selected),
                NO_FIGURE, NO_FIGURE]
    return [str(index), str(summary.get("labeled", "")), str(summary.get("dim", "")),
            f"{summary['threshold']:.6g}" if "threshold" in summary else "",
            f"{summary.get('percentile', 0):g}", str(c.scored), str(c.flagged), _share(c.flagged, c.scored),
            str(c.selected), str(c.selected_flagged), _share(c.selected_flagged, c.selected)]


def not_measured_note(rounds: Sequence[tuple[int, Mapping]]) -> str:
    """Why rounds' densities are not measured yet, on one line: ``rounds`` (index, summary)."""
    from activelabel.campaign.summary import counted  # "1 labeled sample" (trial 14 F5)

    indices = ", ".join(str(i) for i, _ in rounds)
    dims = sorted({int(d.get("dim", 0)) for _, d in rounds})
    smallest = max(int(d.get("smallest_class", 0)) for _, d in rounds)
    dim = dims[-1] if len(dims) == 1 else f"{dims[0]} to {dims[-1]}"
    return (f"Round{'s' if len(rounds) > 1 else ''} {indices}: feature density not measured yet — the smallest "
            f"class had at most {counted(smallest, 'labeled sample')}, not more than the {dim} feature dimensions, "
            "so its covariance is held up by jitter and log densities run to meaningless extremes; no threshold, "
            f"flag or histogram until every class has more than {counted(dims[-1], 'labeled sample')}.")


def campaign_density(engine: Engine, campaign_id: int, record: CampaignRecord,
                     last: int = DENSITY_ROUNDS) -> list[str]:
    """The campaign page's density section: for the last ``last`` rounds with a density, the
    pool's log-density histogram against the picks' with the OOD threshold; a table of every
    such round's threshold and flagged counts; a sentence for the rounds without one."""
    counts = density_counts(engine, campaign_id)
    rows, parts, absent, unmeasured = [], [], [], []
    with_density = [r for r in record.rounds if r.index in counts]
    for r in record.rounds:
        if r.index not in counts:
            absent.append((r.index, _absence(r.kind)))
    for r in with_density:
        summary = (r.uncertainty or {}).get("density") or {}
        if not measured(summary):
            unmeasured.append((r.index, summary))
        rows.append(density_row(r.index, summary, counts[r.index]))
    drawn = [r for r in with_density if measured((r.uncertainty or {}).get("density") or {})]
    for r in drawn[-last:]:
        d = round_density(engine, campaign_id, r.index)
        if d is None:
            continue
        parts.append(html.figure(
            figures.density_histogram(d.pool, d.selected, d.threshold, float(d.summary.get("percentile", 5.0)),
                                      f"round {r.index}: feature log density, pool against selected"),
            f"density-round-{r.index}",
            f"Round {r.index}: {d.pool_flagged} of {len(d.pool)} scored samples flagged out of distribution "
            f"(log q(z) below {d.threshold:.6g} nats), {d.selected_flagged} of the {len(d.selected)} selected"))
    if rows:
        parts.append(html.table(
            "density", ["round", "fitted on (labeled)", "features", "OOD threshold (nats)", "percentile", "scored",
                        "flagged", "flagged %", "selected", "selected flagged", "selected flagged %"], rows))
        parts.append(html.note(
            "log q(z): the log density of a sample's penultimate-layer features under class-conditional Gaussians "
            "fitted on the round's labeled set (DDU, Mukhoti et al. 2021). A sample is flagged out of distribution "
            "when it falls below the threshold: that percentile of the labeled set's own out-of-fold log densities. "
            "Scored samples include ones still out with annotators from earlier rounds."))
    if unmeasured:
        parts.append(html.note(not_measured_note(unmeasured)))
    grouped: dict[str, list[str]] = {}
    for index, why in absent:
        grouped.setdefault(why, []).append(str(index))
    parts += [html.note(f"Round{'s' if len(i) > 1 else ''} {', '.join(i)}: no feature density — {why}.")
              for why, i in grouped.items()]
    return parts or [html.note("No complete round yet.")]


def experiment_density(engine: Engine, groups: Mapping[str, Sequence[CampaignRecord]]) -> list[str]:
    """The experiment page's density section: per strategy (summed over seeds and rounds, then
    per round), the share of its picks flagged out of distribution against the pool's share.
    Only measured rounds count (:func:`measured`): an unmeasured round's flags mean nothing."""
    rounds = {}
    for strategy, runs in groups.items():
        rounds[strategy] = []
        for record in runs:
            summaries = density_summaries(engine, record.campaign_id)
            rounds[strategy] += [(index, summaries[index], c)
                                 for index, c in density_counts(engine, record.campaign_id).items()]
    return density_by_strategy(rounds, {strategy: len(runs) for strategy, runs in groups.items()})


def density_by_strategy(rounds: Mapping[str, Sequence[tuple[int, Mapping, DensityCounts]]],
                        seeds: Mapping[str, int]) -> list[str]:
    """The experiment page's density tables from each strategy's rounds over all its seeds:
    ``rounds[strategy]`` holds (round index, stored density summary, counts) per campaign round
    with a density; ``seeds[strategy]`` how many campaigns it ran. Rounds not measured yet are
    left out of every sum and counted in a note."""
    totals, by_round, unmeasured = [], [], 0
    for strategy, its_rounds in rounds.items():
        per_round: dict[int, np.ndarray] = {}
        for index, summary, c in its_rounds:
            if not measured(summary):
                unmeasured += 1
                continue
            per_round[index] = per_round.get(index, np.zeros(4, dtype=np.int64)) + np.array(
                [c.selected, c.selected_flagged, c.scored, c.flagged])
        if not per_round:
            continue
        total = sum(per_round.values())
        totals.append([strategy, str(seeds[strategy]), str(int(total[0])), str(int(total[1])),
                       _share(int(total[1]), int(total[0])), _share(int(total[3]), int(total[2]))])
        by_round += [[strategy, str(index), f"{int(v[1])} / {int(v[0])}", _share(int(v[1]), int(v[0])),
                      f"{int(v[3])} / {int(v[2])}", _share(int(v[3]), int(v[2]))]
                     for index, v in sorted(per_round.items())]
    left_out = ""
    if unmeasured:
        plural = unmeasured != 1
        left_out = (f" Left out: {unmeasured} campaign round{'s' if plural else ''} whose density is not measured "
                    "yet (a class with no more labeled samples than feature dimensions); "
                    f"{'their' if plural else 'its'} flags mean nothing.")
    if not totals:
        if unmeasured:
            return [html.note("No round of this experiment has a measured feature density yet." + left_out)]
        return [html.note("No round of this experiment stored a feature density (rounds without a model — cold start, "
                          "evaluation — and segmentation rounds have none).")]
    return [
        html.table("density-by-strategy", ["strategy", "seeds", "picks", "picks flagged OOD", "picks flagged %",
                                           "pool flagged %"], totals),
        html.table("density-by-round", ["strategy", "round", "picks flagged", "picks flagged %", "pool flagged",
                                        "pool flagged %"], by_round),
        html.note("Summed over seeds. A pick is flagged out of distribution when its feature log density falls below "
                  "its round's threshold (a low percentile of the labeled set's own log densities). A strategy far "
                  "above the pool's share hunts unfamiliar inputs; random sits near the pool's share." + left_out),
    ]
