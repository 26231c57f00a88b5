"""A small CNN with dropout, sized for any square grayscale or colour image.

Dropout sits after the convolutional block and in the head, as in Gal et al. 2017, so MC
dropout samples the whole feature hierarchy. Batch norm keeps small labeled sets trainable and
is frozen (eval mode) during MC sampling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network from a stored checkpoint."""

    in_channels: int
    num_classes: int
    width: int = 16
    conv_dropout: float = 0.25
    head_dropout: float = 0.5

    def to_dict(self) -> dict:
        return {"name": "small_cnn", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        fields = {k: v for k, v in data.items() if k != "name"}
        return cls(**fields)


class SmallCNN(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        w = spec.width
        self.spec = spec
        self.features = nn.Sequential(
            nn.Conv2d(spec.in_channels, w, 3, padding=1),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(spec.conv_dropout),
            # Adaptive pooling makes the head independent of the input size (8x8 or 28x28).
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(2 * w * 16, 128),
            nn.ReLU(),
            nn.Dropout(spec.head_dropout),
            nn.Linear(128, spec.num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_model(spec: ModelSpec) -> SmallCNN:
    return SmallCNN(spec)
