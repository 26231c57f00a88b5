"""Strategy registry: names, descriptions, aliases, unknown names."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from activelabel.acquisition import (
    STRATEGIES,
    bald,
    get_strategy,
    mean_std,
    predictive_entropy,
    random_scores,
    strategy_names,
)
from activelabel.errors import UnknownStrategyError

EXPECTED = [
    "entropy", "bald", "mean_std", "variation_ratios", "margin", "least_confidence", "random",
    "density", "batchbald", "power_bald", "softmax_bald",
]
BATCH_AWARE = {"batchbald", "power_bald", "softmax_bald"}


def test_names_in_stable_order() -> None:
    assert strategy_names() == EXPECTED
    assert list(STRATEGIES) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_description_is_one_nonempty_line(name: str) -> None:
    s = get_strategy(name)
    assert s.name == name
    assert s.description.strip()
    assert "\n" not in s.description
    assert callable(s.score)


def test_needs_samples_flags() -> None:
    assert {n for n, s in STRATEGIES.items() if s.needs_samples} == {
        "bald", "mean_std", "variation_ratios", *BATCH_AWARE
    }
    assert "T > 1" in get_strategy("bald").description


def test_only_density_reads_features() -> None:
    assert {n for n, s in STRATEGIES.items() if s.needs_features} == {"density"}


def test_density_without_features_says_what_to_pass() -> None:
    from activelabel.errors import InvalidArrayError

    probs = np.full((1, 3, 2), 0.5)
    with pytest.raises(InvalidArrayError, match="features=PoolFeatures"):
        get_strategy("density").score(probs)


def test_scores_are_the_public_functions() -> None:
    assert get_strategy("entropy").score is predictive_entropy
    assert get_strategy("bald").score is bald
    assert get_strategy("random").score is random_scores


def test_aliases_resolve_but_are_not_listed() -> None:
    assert get_strategy("variance").score is mean_std
    assert get_strategy("mutual_information").name == "bald"
    assert "variance" not in strategy_names()


def test_lookup_is_forgiving_about_case_and_dashes() -> None:
    assert get_strategy("Least-Confidence").name == "least_confidence"
    assert get_strategy(" BALD ").name == "bald"


def test_strategy_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_strategy("entropy").name = "x"  # type: ignore[misc]


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownStrategyError) as info:
        get_strategy("coreset")
    msg = str(info.value)
    assert "'coreset'" in msg
    for name in EXPECTED:
        assert name in msg
    assert info.value.available == EXPECTED


def test_unknown_name_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        get_strategy("nope")


def test_non_string_name_is_unknown() -> None:
    with pytest.raises(UnknownStrategyError):
        get_strategy(None)  # type: ignore[arg-type]


def test_batch_aware_flags_and_hooks() -> None:
    from activelabel.acquisition import batchbald_select, power_bald_select, softmax_bald_select

    assert {n for n, s in STRATEGIES.items() if s.batch_aware} == BATCH_AWARE
    assert get_strategy("batchbald").select is batchbald_select
    assert get_strategy("power-bald").select is power_bald_select
    assert get_strategy("SoftmaxBALD".replace("BALD", "_bald")).select is softmax_bald_select
    # their per-sample score (stored beside each pool sample) is BALD
    for name in BATCH_AWARE:
        assert get_strategy(name).score is bald
    assert get_strategy("entropy").select is None
