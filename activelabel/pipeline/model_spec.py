"""What rebuilds a classification network: its :class:`ModelSpec`, without torch.

Stored with every checkpoint and model file, and checked when a campaign's settings are, before
any network is built: a wrong image size for ``gal_cnn`` answers without importing torch
(trial 14 F7). :mod:`activelabel.pipeline.model` builds the networks it names.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from activelabel.errors import ConfigError
from activelabel.pipeline.architectures import ARCHITECTURES, GAL_LAYOUTS, SMALL_CNN


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild the network of a checkpoint; stored with every checkpoint.

    - ``architecture``: one of ``ARCHITECTURES``.
    - ``dropout``: probability of the head dropout (before the final linear layer).
    - ``width``: the small CNN's channel width; only meaningful for ``small_cnn``.
    - ``conv_dropout``: dropout after the convolutional block of ``small_cnn`` and the ``gal_cnn`` layouts
      (other values for other architectures raise ``ConfigError``).
    - ``input_size``: ``(height, width)`` of the images; required by ``gal_cnn`` and
      ``gal_cnn_keras`` (their dense layer sees the flattened conv features: for ``gal_cnn``
      ``32 x ((H - 6) // 2) x ((W - 6) // 2)`` of them, for ``gal_cnn_keras``
      ``32 x ((H - 4) // 5) x ((W - 4) // 5)``), unused by the others (left ``None``).
    - ``weights``: path of a user weights file to start training from. Used only when a model is
      built fresh for training, never when a stored checkpoint is loaded.
    - ``freeze_backbone``: train only ``classifier`` (backbone weights and batch-norm statistics
      stay as loaded).
    - ``mean``, ``std``: per-channel normalisation ``(x - mean) / std`` of images in [0, 1];
      ``None`` means none. One value per input channel.

    Raises ``ConfigError`` for an unknown architecture or inconsistent values.
    """

    in_channels: int
    num_classes: int
    architecture: str = SMALL_CNN
    dropout: float = 0.5
    width: int = 16
    conv_dropout: float = 0.25
    weights: str | None = None
    freeze_backbone: bool = False
    mean: tuple[float, ...] | None = field(default=None)
    std: tuple[float, ...] | None = field(default=None)
    input_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(
                f"unknown model architecture {self.architecture!r}; choose one of: {', '.join(ARCHITECTURES)}"
            )
        if self.in_channels < 1 or self.num_classes < 1:
            raise ConfigError(
                f"model needs at least 1 input channel and 1 class, got {self.in_channels} "
                f"channel(s) and {self.num_classes} class(es)"
            )
        for name in ("dropout", "conv_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"model {name} must be in [0, 1), got {value}")
        if self.architecture != SMALL_CNN and self.width != 16:
            raise ConfigError(f"width applies only to small_cnn, not to {self.architecture}; remove it")
        if self.architecture not in (SMALL_CNN, *GAL_LAYOUTS) and self.conv_dropout != 0.25:
            raise ConfigError(
                f"conv_dropout applies only to small_cnn, gal_cnn and gal_cnn_keras, not to {self.architecture}; remove it"
            )
        if self.input_size is not None:
            size = tuple(int(v) for v in self.input_size)
            if len(size) != 2 or min(size) < 1:
                raise ConfigError(f"input_size must be (height, width) in pixels, got {self.input_size!r}")
            object.__setattr__(self, "input_size", size)
        if self.architecture in GAL_LAYOUTS:
            layout, name = GAL_LAYOUTS[self.architecture], self.architecture
            if self.input_size is None:
                raise ConfigError(f"{name} needs the image size (input_size = (height, width)) to size its dense layer")
            if min(self.input_size) < layout.min_side:
                k, p = layout.kernel, layout.pool
                raise ConfigError(
                    f"{name} needs images of at least {layout.min_side}x{layout.min_side} pixels (two {k}x{k} "
                    f"convolutions and a {p}x{p} max-pool), got {self.input_size[0]}x{self.input_size[1]}; "
                    "use a larger image_size or small_cnn"
                )
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is None:
                continue
            values = tuple(float(v) for v in value)
            if len(values) != self.in_channels:
                raise ConfigError(
                    f"normalisation {name} has {len(values)} value(s) but the images have "
                    f"{self.in_channels} channel(s); give one value per channel"
                )
            object.__setattr__(self, name, values)
        if (self.mean is None) != (self.std is None):
            raise ConfigError("normalisation needs both mean and std (or neither)")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ConfigError(f"normalisation std must be positive, got {list(self.std)}")

    def to_dict(self) -> dict:
        """JSON-ready form, as stored with checkpoints and model files.

        Options left at their "unset" value are left out, so the default small CNN is stored
        exactly as earlier versions stored it: ``{"name": "small_cnn", "in_channels", "num_classes",
        "width", "conv_dropout", "head_dropout"}``.
        """
        data: dict = {"name": self.architecture, "in_channels": self.in_channels, "num_classes": self.num_classes}
        if self.architecture == SMALL_CNN:
            data |= {"width": self.width, "conv_dropout": self.conv_dropout}
        if self.architecture in GAL_LAYOUTS:
            data |= {"conv_dropout": self.conv_dropout, "input_size": list(self.input_size or ())}
        data["head_dropout"] = self.dropout
        if self.weights is not None:
            data["weights"] = self.weights
        if self.freeze_backbone:
            data["freeze_backbone"] = True
        if self.mean is not None:
            data["mean"] = list(self.mean)
        if self.std is not None:
            data["std"] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        """Inverse of ``to_dict``; also reads the field names (``architecture``, ``dropout``).

        Raises ``ConfigError`` for an unknown key or architecture.
        """
        aliases = {"name": "architecture", "head_dropout": "dropout"}
        known = {f.name for f in fields(cls)}
        kwargs = {}
        for key, value in data.items():
            name = aliases.get(key, key)
            if name not in known:
                raise ConfigError(
                    f"unknown model setting {key!r} in stored architecture {data!r}; "
                    "it was written by a newer activelabel, upgrade to read it"
                )
            kwargs[name] = value
        return cls(**kwargs)
