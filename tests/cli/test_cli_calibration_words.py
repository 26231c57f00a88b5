"""How status and the report name a round's mixture temperature T2 (stored in Round.calibration)."""

from __future__ import annotations

from activelabel.campaign.calibration_terms import kept_mixture_temperature
from activelabel.cli import _mixture_temperature
from activelabel.report.uncertainty import _mixture_clause


def test_a_kept_mixture_temperature_is_named_and_one_or_none_is_not() -> None:
    kept, not_kept, older = {"mixture_temperature": 0.666}, {"mixture_temperature": 1.0}, {"temperature": 1.2}
    assert kept_mixture_temperature(kept) == 0.666
    assert kept_mixture_temperature(not_kept) is None and kept_mixture_temperature(older) is None
    assert _mixture_temperature(kept) == " · mixture temperature 0.666"
    assert _mixture_temperature(not_kept) == _mixture_temperature(older) == ""
    assert _mixture_clause(kept) == ", mixture T2 = 0.666"
    assert _mixture_clause(kept, " and mixture T2 = ") == " and mixture T2 = 0.666"
    assert _mixture_clause(older) == ""
