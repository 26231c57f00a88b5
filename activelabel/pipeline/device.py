"""Pick the torch device once, the same way everywhere."""

from __future__ import annotations

import torch

from activelabel.errors import ConfigError


def use_cpu_threads(threads: int) -> None:
    """Set torch's intra-op threads; tiny models lose time to thread hand-offs, not gain."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` takes CUDA when present, else CPU; an explicit CUDA request without CUDA fails."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine")
    return device
