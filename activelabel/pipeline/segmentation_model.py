"""Segmentation networks by name: a small built-in U-Net, or a U-Net from segmentation-models-pytorch.

Every network built here has the same shape, so MC-dropout prediction treats them alike::

    forward(x) = head(trunk(x))      # logits [N, C, H, W]

- ``trunk``: the campaign's normalisation, the encoder and the decoder: per-pixel features
  ``[N, D, H, W]`` at full resolution. Deterministic in eval mode.
- ``head``: ``nn.Sequential(nn.Dropout(p), conv)``: dropout before the segmentation head,
  the only source of randomness in MC dropout. The network is an ``nn.Sequential`` of these
  two, so :func:`activelabel.pipeline.prediction.predict_stream` runs the trunk once per chunk
  and only the head on the T stacked copies ("full_network" mode), with its per-pass dropout
  masks shared by every image.

Architectures (:data:`SEGMENTATION_ARCHITECTURES`):

- ``unet_small``: a 3-level U-Net (Ronneberger, Fischer & Brox 2015), ``width`` channels at
  the top level; inputs must be divisible by 4.
- ``smp_unet``: ``segmentation_models_pytorch.Unet`` with ``encoder`` (e.g. ``resnet18``,
  ``mobilenet_v2``), always built with ``encoder_weights=None``: nothing is ever downloaded. A
  weights file the user supplies is loaded by :func:`load_segmentation_weights`. Inputs must be
  divisible by 32.

References: Kendall, Badrinarayanan & Cipolla 2017, "Bayesian SegNet" (MC dropout for
per-pixel uncertainty); Gal & Ghahramani 2016.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from activelabel.errors import ConfigError, WeightsFileError
from activelabel.pipeline.model import Normalize
from activelabel.pipeline.model_file import ensemble_size, save_one_member_command
from activelabel.pipeline.segmentation_sizes import (  # noqa: F401 - re-exported
    SEGMENTATION_ARCHITECTURES,
    SIDE_DIVISORS,
    SMP_UNET,
    UNET_SMALL,
    fitting_sides,
)

#: Encoders offered for ``smp_unet``: small ones that train on a CPU in minutes.
SMP_ENCODERS = ("resnet18", "resnet34", "mobilenet_v2", "efficientnet-b0")


@dataclass(frozen=True)
class SegmentationSpec:
    """Everything needed to rebuild a segmentation network; stored with every checkpoint.

    ``dropout`` is the probability of the dropout before the segmentation head; ``width`` the
    top-level channels of ``unet_small``; ``encoder`` the encoder of ``smp_unet``; ``weights``
    a user weights file to start training from (never downloaded); ``mean``/``std`` the
    per-channel normalisation of images in [0, 1]. Raises ``ConfigError`` naming the bad value.
    """

    in_channels: int
    num_classes: int
    architecture: str = UNET_SMALL
    dropout: float = 0.5
    width: int = 16
    encoder: str = "resnet18"
    weights: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.architecture not in SEGMENTATION_ARCHITECTURES:
            raise ConfigError(
                f"unknown segmentation architecture {self.architecture!r}; choose one of: "
                f"{', '.join(SEGMENTATION_ARCHITECTURES)}"
            )
        if self.in_channels < 1 or self.num_classes < 2:
            raise ConfigError(
                f"segmentation needs at least 1 input channel and 2 classes, got {self.in_channels} "
                f"channel(s) and {self.num_classes} class(es)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"segmentation dropout must be in [0, 1), got {self.dropout}")
        if self.width < 4:
            raise ConfigError(f"unet_small width must be at least 4, got {self.width}")
        if self.architecture == SMP_UNET and self.encoder not in SMP_ENCODERS:
            raise ConfigError(f"unknown smp_unet encoder {self.encoder!r}; choose one of: {', '.join(SMP_ENCODERS)}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None:
                values = tuple(float(v) for v in value)
                if len(values) != self.in_channels:
                    raise ConfigError(f"normalisation {name} needs {self.in_channels} value(s), got {len(values)}")
                object.__setattr__(self, name, values)
        if (self.mean is None) != (self.std is None):
            raise ConfigError("normalisation needs both mean and std (or neither)")

    @property
    def divisor(self) -> int:
        """Image sides must be a multiple of this (:data:`SIDE_DIVISORS`)."""
        return SIDE_DIVISORS[self.architecture]

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("mean", "std"):
            if data[name] is not None:
                data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SegmentationSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown segmentation model settings {unknown}; known: {sorted(known)}")
        return cls(**data)


def _check_size(x: torch.Tensor, spec: SegmentationSpec) -> None:
    h, w = x.shape[-2:]
    d = spec.divisor
    if h % d or w % d:
        raise ConfigError(
            f"{spec.architecture} needs image sides divisible by {d}; got {h}x{w} "
            f"(set the image size to e.g. {fitting_sides(min(h, w), d)[0]})"
        )


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallUNetTrunk(nn.Module):
    """Normalisation, a 3-level encoder and decoder with skip connections: ``[N, width, H, W]``."""

    def __init__(self, spec: SegmentationSpec) -> None:
        super().__init__()
        w = spec.width
        self.out_channels = w
        self.spec = spec
        self.normalize = Normalize(spec.mean, spec.std)
        self.enc1 = _block(spec.in_channels, w)
        self.enc2 = _block(w, 2 * w)
        self.bottom = _block(2 * w, 4 * w)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = _block(4 * w, 2 * w)
        self.up1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec1 = _block(2 * w, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_size(x, self.spec)
        x = self.normalize(x)
        e1 = self.enc1(x)
        e2 = self.enc2(nn.functional.max_pool2d(e1, 2))
        b = self.bottom(nn.functional.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
        return self.dec1(torch.cat([self.up1(d2), e1], dim=1))


class SmpUNetTrunk(nn.Module):
    """Normalisation, then the encoder and decoder of an smp ``Unet`` (its head is dropped)."""

    def __init__(self, spec: SegmentationSpec) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        net = smp.Unet(
            encoder_name=spec.encoder,
            encoder_weights=None,  # never download
            in_channels=spec.in_channels,
            classes=spec.num_classes,
        )
        self.spec = spec
        self.normalize = Normalize(spec.mean, spec.std)
        self.encoder = net.encoder
        self.decoder = net.decoder
        self.out_channels = int(net.segmentation_head[0].in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_size(x, self.spec)
        return self.decoder(self.encoder(self.normalize(x)))


class SegmentationNet(nn.Sequential):
    """``head(trunk(x))``: logits ``[N, C, H, W]`` for images ``[N, in_channels, H, W]``.

    An ``nn.Sequential`` of ``trunk`` and ``head`` (``nn.Dropout`` then a 1x1 convolution), so
    MC-dropout prediction runs the trunk once and the head T times. The trunk raises
    ``ConfigError`` for an input whose sides are not a multiple of ``spec.divisor``.
    """

    def __init__(self, spec: SegmentationSpec) -> None:
        trunk: nn.Module = SmallUNetTrunk(spec) if spec.architecture == UNET_SMALL else SmpUNetTrunk(spec)
        head = nn.Sequential(nn.Dropout(spec.dropout), nn.Conv2d(trunk.out_channels, spec.num_classes, 1))
        super().__init__()
        self.add_module("trunk", trunk)
        self.add_module("head", head)
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


def build_segmentation_model(spec: SegmentationSpec) -> SegmentationNet:
    """A fresh network for ``spec`` (random init; ``spec.weights`` is applied by training)."""
    return SegmentationNet(spec)


def load_segmentation_weights(model: SegmentationNet, path: str | Path) -> list[str]:
    """Load a user weights file into ``model`` (nothing is downloaded); returns the keys loaded.

    Accepted (read with ``torch.load(weights_only=True)``, no pickled code):

    - a full state_dict of a :class:`SegmentationNet` (``torch.save(model.state_dict(), path)``,
      or a dict holding it under ``"state_dict"``) of the same architecture, encoder/width and
      channels. When only the segmentation head differs in shape (another number of classes),
      the trunk is loaded and the head keeps its fresh initialisation, as a classification
      campaign's head does (``pipeline.model_file.load_backbone_weights``);
    - an encoder-only state_dict (keys as ``model.trunk.encoder`` names them, e.g. a
      torchvision/smp resnet18 file for ``smp_unet``; a classifier's ``fc.*`` keys are
      skipped): the decoder and head stay fresh.

    Raises ``WeightsFileError`` (one line: the file, the architecture, the first offending
    keys and what to do) for a missing or unreadable file, keys that fit neither form, or shapes
    that differ beyond the head; the model is untouched when it raises.
    """
    file = Path(path).expanduser()
    spec = model.spec
    detail = f"encoder {spec.encoder}" if spec.architecture == SMP_UNET else f"width {spec.width}"
    where = (f"weights file {file} for {spec.architecture} ({detail}, {spec.in_channels} channel(s), "
             f"{spec.num_classes} classes)")
    if not file.is_file():
        raise WeightsFileError(f"{where}: file does not exist; check the weights path in the campaign file")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise WeightsFileError(f"{where}: cannot be read as plain tensors ({first}); save one with "
                               "torch.save(model.state_dict(), path)") from None
    members = ensemble_size(state)
    if members is not None:  # export --model of an ensemble campaign
        raise WeightsFileError(
            f"{where}: it is an activelabel ensemble of {members} U-Nets, and a campaign starts from one "
            f"network; save the member you want as its own file and give that one: {save_one_member_command(file)}")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsFileError(f"{where}: the file holds no state_dict of tensors; save one with "
                               "torch.save(model.state_dict(), path)")
    target = model.state_dict()
    if any(k.startswith(("trunk.", "head.")) for k in state):
        mapped, wanted, what = dict(state), set(target), "a full segmentation network"
    else:
        prefix = "trunk.encoder."
        mapped = {prefix + k: v for k, v in state.items() if not k.startswith("fc.")}
        wanted, what = {k for k in target if k.startswith(prefix)}, f"an encoder state_dict of {spec.encoder}"
    if set(mapped) == set(target):
        head = {k for k in target if k.startswith("head.")}
        if any(mapped[k].shape != target[k].shape for k in head):  # another class count: fresh head
            mapped = {k: v for k, v in mapped.items() if k not in head}
            wanted = wanted - head
    missing = sorted(k for k in wanted - mapped.keys() if not k.endswith("num_batches_tracked"))
    unexpected = sorted(mapped.keys() - wanted)
    mismatched = [f"{k} {list(mapped[k].shape)} vs {list(target[k].shape)}"
                  for k in sorted(mapped.keys() & wanted) if mapped[k].shape != target[k].shape]
    problems = "; ".join(
        f"{len(items)} {kind} ({', '.join(items[:3])}{', …' if len(items) > 3 else ''})"
        for kind, items in (("missing key(s)", missing), ("unexpected key(s)", unexpected),
                            ("shape mismatch(es), file vs network", mismatched))
        if items
    )
    if problems:
        raise WeightsFileError(
            f"{where} does not fit it as {what}: {problems}; give weights saved from a network of the "
            f"same architecture, {'encoder' if spec.architecture == SMP_UNET else 'width'} and channels "
            "(set architecture / encoder / channels to those the file was trained with), or an "
            "encoder-only state_dict"
        )
    model.load_state_dict(mapped, strict=False)
    return sorted(mapped)
