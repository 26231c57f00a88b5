"""The class balance of the picks counts the strategy's picks only (trial 14 F3): the random draws
of evaluation and cold-start rounds are left out with a note naming them, and a single campaign's
figure is not titled "(all seeds)". Hand-made records: the counting and the words, no campaign run."""

from __future__ import annotations

from activelabel.report import build, figures
from activelabel.report.data import CampaignRecord, Picked, RoundRow


def _row(index: int, kind: str) -> RoundRow:
    return RoundRow(index=index, kind=kind, labeled=None, accuracy=None, nll=None, ece=None, timings={})


def _record(kinds: list[str], waiting: str | None = None, seed: int = 0) -> CampaignRecord:
    rounds = [_row(i, kind) for i, kind in enumerate(kinds, start=1)]
    last = len(kinds) + (waiting is not None)
    picked = [Picked(i, rank, 100 * i + rank, f"s{i}-{rank}.png", 0.5, "0", label, None)
              for i in range(1, last + 1) for rank, label in enumerate(["0", "1", "1"])]
    return CampaignRecord(name=f"c{seed}", strategy="bald", seed=seed, labels=["0", "1"], config={}, rounds=rounds,
                          picked=picked, waiting=None if waiting is None else _row(last, waiting))


def _titles(monkeypatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(figures, "to_base64_png", lambda figure: seen.extend(ax.get_title() for ax in figure.axes) or "")
    return seen


def test_a_campaigns_balance_leaves_out_its_evaluation_and_cold_start_draws(monkeypatch) -> None:
    record = _record(["evaluation", "cold_start", "active", "active"])
    counts = build._class_counts([record])
    assert sorted(counts) == [3, 4]
    assert dict(counts[3]) == {"0": 1, "1": 2}
    titles = _titles(monkeypatch)
    part = build._class_balance({"bald": [record]}, record.labels, "caption")
    assert titles == ["bald: classes picked per round"]  # one campaign: not "(all seeds)"
    assert ("Left out of the chart: round 1 (evaluation), round 2 (cold start): their samples were drawn at random "
            "(the evaluation set, never trained on, or a cold-start batch labeled before a model could score the "
            "pool), not picked by the strategy.") in part


def test_only_draws_so_far_say_no_strategy_picked_yet() -> None:
    record = _record(["evaluation"], waiting="cold_start")
    assert build._class_counts([record]) == {}
    part = build._class_balance({"bald": [record]}, record.labels, "caption")
    assert "No strategy has picked a sample yet" in part
    assert "round 1 (evaluation), round 2 (cold start)" in part


def test_an_experiments_balance_adds_seeds_and_leaves_out_their_cold_starts(monkeypatch) -> None:
    runs = [_record(["cold_start", "active"], seed=seed) for seed in (0, 1)]
    counts = build._class_counts(runs)
    assert sorted(counts) == [2] and dict(counts[2]) == {"0": 2, "1": 4}
    titles = _titles(monkeypatch)
    part = build._class_balance({"bald": runs}, ["0", "1"], "caption", across=" (all seeds)")
    assert titles == ["bald: classes picked per round (all seeds)"]
    assert "Left out of the chart: round 1 (cold start): " in part


def test_a_campaign_of_active_rounds_only_has_no_note(monkeypatch) -> None:
    record = _record(["active", "active"])
    _titles(monkeypatch)
    part = build._class_balance({"bald": [record]}, record.labels, "caption")
    assert "Left out" not in part and sorted(build._class_counts([record])) == [1, 2]
