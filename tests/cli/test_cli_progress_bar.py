"""The round's progress bar fills when the round is done, and stays where the work stopped when
the round stopped, failed or waits (trial 11, F9: "round 13 failed: stopped by Ctrl-C ━━━ 5/5")."""

from __future__ import annotations

import io

from rich.console import Console

from activelabel.cli_progress import RichRoundProgress


def _bar(done: bool) -> tuple[float, float, str]:
    bars = RichRoundProgress(Console(file=io.StringIO(), width=120, force_terminal=False))
    with bars:
        bars.start_round(13)
        bars.phase("training", 5)
        bars.advance(2)
        bars.finish_round("round 13 ended", done=done)
        task = bars._progress.tasks[0]
        return task.completed, task.total, task.description


def test_a_done_round_fills_its_bar_and_a_stopped_one_keeps_where_it_stopped() -> None:
    assert _bar(done=True) == (5, 5, "round 13 ended")
    assert _bar(done=False) == (2, 5, "round 13 ended")
