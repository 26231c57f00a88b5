"""`compare --workers`: 'auto' (the default) runs as many campaigns at once as the machine has room for."""

from __future__ import annotations

import pytest

from activelabel.campaign import concurrency
from activelabel.campaign.concurrency import choose_workers, parse_workers
from activelabel.errors import ConfigError


def _never_asked() -> bool:
    raise AssertionError("CUDA is asked about only when the device is 'auto'")


@pytest.mark.parametrize("value, expected", [("auto", None), ("AUTO", None), (" auto ", None), ("3", 3), (2, 2), (1, 1)])
def test_workers_setting_parses_auto_or_a_whole_number(value, expected) -> None:
    assert parse_workers(value, "--workers") == expected


@pytest.mark.parametrize("value, message", [
    ("0", "--workers must be at least 1, got 0"),
    (0, "--workers must be at least 1, got 0"),
    ("-2", "--workers must be at least 1, got -2"),
    ("two", "--workers must be 'auto' or a whole number of at least 1, got 'two'"),
    (1.5, "--workers must be 'auto' or a whole number of at least 1, got 1.5"),
    (True, "--workers must be 'auto' or a whole number of at least 1, got True"),
    ("", "--workers must be 'auto' or a whole number of at least 1, got ''"),
])
def test_a_bad_workers_setting_is_refused_naming_where_it_came_from(value, message) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_workers(value, "--workers")
    assert str(refused.value) == message


def test_auto_on_the_cpu_runs_one_campaign_per_usable_core_and_per_cpu_threads_cores(monkeypatch) -> None:
    monkeypatch.setattr(concurrency, "usable_cpus", lambda: 8)
    chosen = choose_workers(None, 15, device="cpu", cpu_threads=1, cuda_available=_never_asked)
    assert (chosen.count, chosen.why) == (8, "auto: 8 usable CPU cores")
    chosen = choose_workers(None, 15, device="cpu", cpu_threads=3, cuda_available=_never_asked)
    assert (chosen.count, chosen.why) == (2, "auto: 8 usable CPU cores, 3 torch threads each")
    # more threads than cores: still one campaign at a time, never zero
    assert choose_workers(None, 15, device="cpu", cpu_threads=16, cuda_available=_never_asked).count == 1


def test_auto_never_starts_more_processes_than_campaigns_are_left(monkeypatch) -> None:
    monkeypatch.setattr(concurrency, "usable_cpus", lambda: 8)
    chosen = choose_workers(None, 3, device="cpu", cpu_threads=1, cuda_available=_never_asked)
    assert (chosen.count, chosen.why) == (3, "auto: 3 campaigns left")
    assert choose_workers(None, 1, device="cpu", cpu_threads=1, cuda_available=_never_asked).count == 1


def test_auto_on_a_gpu_runs_one_campaign_at_a_time(monkeypatch) -> None:
    monkeypatch.setattr(concurrency, "usable_cpus", lambda: 8)
    assert choose_workers(None, 15, device="cuda:0", cpu_threads=1, cuda_available=_never_asked).count == 1
    chosen = choose_workers(None, 15, device="auto", cpu_threads=1, cuda_available=lambda: True)
    assert (chosen.count, chosen.why) == (1, "auto: one process on the GPU; --workers N runs more")
    assert choose_workers(None, 15, device="auto", cpu_threads=1, cuda_available=lambda: False).count == 8


def test_a_given_number_wins_over_auto(monkeypatch) -> None:
    monkeypatch.setattr(concurrency, "usable_cpus", lambda: 2)
    chosen = choose_workers(4, 15, device="cuda", cpu_threads=1, cuda_available=_never_asked)
    assert (chosen.count, chosen.why) == (4, "--workers")


def test_usable_cpus_counts_this_process_affinity() -> None:
    import os

    from activelabel.pipeline.cpus import usable_cpus

    assert usable_cpus() == len(os.sched_getaffinity(0))
