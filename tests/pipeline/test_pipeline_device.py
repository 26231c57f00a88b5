"""Device selection: cpu, auto, and a clear error for CUDA where there is none."""

from __future__ import annotations

import pytest
import torch

from activelabel.errors import ActiveLabelError, ConfigError
from activelabel.pipeline.device import resolve_device


def test_cpu() -> None:
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_is_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device() == torch.device("cpu")  # auto is the default


def test_auto_takes_cuda_when_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


def test_auto_matches_this_machine() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_config_error(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available") as info:
        resolve_device(name)
    assert repr(name) in str(info.value)
    assert isinstance(info.value, ActiveLabelError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available on this machine")
def test_cuda_really_unavailable_here() -> None:
    with pytest.raises(ConfigError):
        resolve_device("cuda")


def test_use_cpu_threads_sets_and_keeps_thread_count() -> None:
    from activelabel.pipeline.device import use_cpu_threads

    original = torch.get_num_threads()
    try:
        use_cpu_threads(1)
        assert torch.get_num_threads() == 1
        use_cpu_threads(1)  # already set: a no-op
        assert torch.get_num_threads() == 1
        use_cpu_threads(2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(original)
    assert torch.get_num_threads() == original
