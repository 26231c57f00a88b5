"""How a mean over seeds is written: with its sample std, or alone where one seed gives none."""

from __future__ import annotations


def mean_std_text(mean: float, std: float | None, count: int, digits: int = 4) -> str:
    """``"0.9123 ± 0.0045"`` over two or more values; over one, the mean alone (every table that
    shows it has a seeds column saying 1): a sample std of one value is undefined, and
    "± 0.0000" would read as a spread measured to be nil (trial 18 F8)."""
    if count < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std or 0.0:.{digits}f}"
