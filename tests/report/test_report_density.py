"""The report's feature-density section (DDU log densities, OOD flags) equals what the rounds
stored: per round of a campaign, the threshold, the flagged counts of the pool and of the picks;
per strategy of an experiment, the share of picks flagged out of distribution."""

from __future__ import annotations

import json

from report_tiny import SEEDS, STRATEGIES


def _share(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}" if whole else ""


def _round_counts(exp, campaign: str) -> list[tuple[int, dict, int, int, int, int]]:
    """(round index, stored density summary, scored, flagged, selected, selected flagged) per complete round."""
    out = []
    for index, uncertainty, round_id in exp.query(
        'SELECT r."index", r.uncertainty, r.id FROM round r JOIN campaign c ON c.id = r.campaign_id '
        "WHERE c.name = ? AND r.status = 'complete' ORDER BY r.\"index\"", campaign):
        summary = json.loads(uncertainty)["density"]
        scored, flagged = exp.query(
            "SELECT count(*), sum(ood) FROM score WHERE round_id = ? AND log_density IS NOT NULL", round_id)[0]
        selected, selected_flagged = exp.query(
            "SELECT count(*), coalesce(sum(s.ood), 0) FROM score s JOIN selection x ON x.round_id = s.round_id "
            "AND x.sample_id = s.sample_id WHERE s.round_id = ? AND s.log_density IS NOT NULL", round_id)[0]
        out.append((index, summary, scored, flagged, selected, selected_flagged))
    return out


def test_campaign_density_table_and_figures_equal_the_database(campaign_report, calibrated_experiment) -> None:
    _, page = campaign_report
    counts = _round_counts(calibrated_experiment, "tiny-random-seed1")
    assert [c[0] for c in counts] == [1, 2]
    expected = []
    for index, d, scored, flagged, selected, picked_flagged in counts:
        assert flagged == d["flagged"] and scored == 300 and selected == 5  # no leftovers in a simulated campaign
        expected.append([str(index), str(d["labeled"]), str(d["dim"]), f"{d['threshold']:.6g}", f"{d['percentile']:g}",
                         str(scored), str(flagged), _share(flagged, scored), str(selected), str(picked_flagged),
                         _share(picked_flagged, selected)])
        assert page.captions[f"density-round-{index}"] == (
            f"Round {index}: {flagged} of {scored} scored samples flagged out of distribution (log q(z) below "
            f"{d['threshold']:.6g} nats), {picked_flagged} of the {selected} selected")
    assert page.tables["density"][1:] == expected
    assert sum(c[3] for c in counts) > 0  # the tiny campaign does flag some: the test checks real numbers


def test_experiment_share_of_picks_flagged_per_strategy_equals_the_database(experiment_report, tiny_experiment) -> None:
    _, page, _, _ = experiment_report
    rows = []
    for strategy in STRATEGIES:
        counts = [c for seed in SEEDS for c in _round_counts(tiny_experiment, f"tiny-{strategy}-seed{seed}")]
        picks, flagged = sum(c[4] for c in counts), sum(c[5] for c in counts)
        scored, pool_flagged = sum(c[2] for c in counts), sum(c[3] for c in counts)
        rows.append([strategy, str(len(SEEDS)), str(picks), str(flagged), _share(flagged, picks),
                     _share(pool_flagged, scored)])
    assert page.tables["density-by-strategy"][1:] == rows
    assert len(page.tables["density-by-round"]) == 1 + len(STRATEGIES) * 2
