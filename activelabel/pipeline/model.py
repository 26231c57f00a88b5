"""Classification networks by name: the small CNN, or a torchvision architecture with a dropout head.

Every network built here has the same shape, so training, MC dropout and feature-space methods
(feature density, DDU) treat them alike::

    forward(x) = classifier(backbone(normalize(x)))

- ``normalize``: the campaign's per-channel mean/std, the first layer of the network, so a
  checkpoint or an exported file carries it (its values come from the ``ModelSpec``, which is
  stored with every checkpoint; the buffers are not in the state_dict).
- ``backbone(x) -> [N, D]``: penultimate features, after global pooling and before the head
  dropout. ``embed(x)`` is ``backbone(normalize(x))`` for raw images.
- ``classifier``: an ``nn.Module`` holding the head dropout and the final ``nn.Linear(D, C)``.

The small CNN keeps dropout after its convolutional block as well as in the head (Gal et al.
2017), so MC dropout samples the whole feature hierarchy (``mc_dropout_mode`` says
``"full_network"``). ``gal_cnn`` is the network of Gal, Islam & Ghahramani 2017, Sec. 5.1, as the
paper's text gives it, and ``gal_cnn_keras`` the one the authors' released Keras code builds (no
batch norm; dropout after the conv block and in the head, so ``"full_network"`` too); their dense
layer's input width depends on the image size, which their spec carries (``input_size``). torchvision networks get dropout only in the new head: their backbone is
deterministic in eval mode, so the features can be computed once and only the head resampled
(``"head_only"``). Batch norm is frozen (eval mode) during MC sampling either way.

torchvision networks are always built with ``weights=None``: nothing is ever downloaded. A
weights file the user supplies is loaded by ``activelabel.pipeline.model_file.load_backbone_weights``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import nn

from activelabel.errors import ConfigError
from activelabel.pipeline.architectures import (  # noqa: F401  (their names, without torch)
    ARCHITECTURES,
    GAL_CNN,
    GAL_CNN_KERAS,
    GAL_CNN_MIN_SIDE,
    GAL_LAYOUTS,
    SMALL_CNN,
    TORCHVISION_ARCHITECTURES,
    GalLayout,
)
from activelabel.pipeline.model_spec import ModelSpec  # noqa: F401  (its home, without torch)

DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)

McDropoutMode = Literal["head_only", "full_network"]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; identity when the spec has no normalisation.

    The buffers are not persistent: their values come from the ``ModelSpec``, so state_dicts
    written before normalisation existed still load.
    """

    def __init__(self, mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
        super().__init__()
        self.enabled = mean is not None and std is not None
        shape = (1, -1, 1, 1)
        self.register_buffer(
            "mean", torch.tensor(mean if self.enabled else [0.0]).view(shape), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std if self.enabled else [1.0]).view(shape), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        return (x - self.mean) / self.std


class _DenseHeadCNN(nn.Module):
    """What :class:`SmallCNN` and :class:`GalCNN` share: ``normalize`` -> ``features`` (convs)
    -> ``head`` = ``[Linear(., D), ReLU, Dropout, Linear(D, C)]`` (``D = feature_dim``: 128, or 256 for
    ``gal_cnn_keras``). The backbone ends at the
    hidden layer's ReLU, so the head's dropout is what MC sampling repeats."""

    normalize: nn.Module
    features: nn.Module
    head: nn.Sequential

    @property
    def classifier(self) -> nn.Module:
        return self.head[2:]

    @property
    def regularised(self) -> list[nn.Linear]:
        """The hidden dense layer (``recipe = "gal2017"`` puts its L2 penalty there)."""
        return [self.head[0]]

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        return self.head[:2](self.features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[N, D]`` of raw images ``[N, C, H, W]``."""
        return self.backbone(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


class SmallCNN(_DenseHeadCNN):
    """Two conv layers, pooling, a 128-unit hidden layer, dropout in both parts.

    State keys ``features.*`` and ``head.*`` are those of every earlier version. ``backbone`` is
    ``features`` plus the hidden layer (``D = 128``); ``classifier`` is the head's dropout and
    final linear layer (a view on ``head``, so it adds no keys).
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        w = spec.width
        self.spec = spec
        self.feature_dim = 128
        self.normalize = Normalize(spec.mean, spec.std)
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
            nn.Linear(2 * w * 16, self.feature_dim),
            nn.ReLU(),
            nn.Dropout(spec.dropout),
            nn.Linear(self.feature_dim, spec.num_classes),
        )



class GalCNN(_DenseHeadCNN):
    """The CNN of Gal, Islam & Ghahramani 2017 (Deep Bayesian Active Learning with Image Data),
    in one of two layouts (``GAL_LAYOUTS``)::

        conv(32, k x k) - ReLU - conv(32, k x k) - ReLU - max-pool(p x p) - dropout(0.25)
        - dense(H) - ReLU - dropout(0.5) - dense(C)

    - ``gal_cnn``: the paper's text (Sec. 5.1), k = 4, p = 2, H = 128. The dense layer takes
      ``32 * ((h - 6) // 2) * ((w - 6) // 2)`` inputs (3,872 for 28x28 MNIST).
    - ``gal_cnn_keras``: the authors' released Keras code (``Riashat/Deep-Bayesian-Active-Learning``,
      ``MC_Dropout_Keras/Dropout_Bald_Q10_N1000_Paper.py``), k = 3, p = 5, H = 256: the dense
      layer takes ``32 * ((h - 4) // 5) * ((w - 4) // 5)`` inputs (512 for MNIST). Why both: the
      text and the code disagree, and on the same labels the code's network, trained long
      enough, is the one that reaches the paper's Table 1 accuracies (BENCHMARKS.md, "Gal et al.
      2017": the diagnosis).

    Valid (unpadded) convolutions, no batch norm, weights initialised as Keras did (Glorot
    uniform, zero biases). Any channel count and any image of at least ``layout.min_side``.

    State keys ``features.*`` (the conv block: conv 0, conv 2) and ``head.*`` (dense 0, dense 3)
    as in ``SmallCNN``. ``backbone`` is ``features`` plus the hidden dense layer and its ReLU
    (``D = H``); ``classifier`` is the head dropout and the final dense layer.
    ``regularised`` is the hidden dense layer: the one layer the authors' code puts its L2 weight
    decay on (Keras ``W_regularizer=l2(c / N)``: weights only, no bias).
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if spec.input_size is None:  # pragma: no cover - ModelSpec checks it
            raise ConfigError(f"{spec.architecture} needs input_size")
        layout = GAL_LAYOUTS[spec.architecture]
        self.spec = spec
        self.feature_dim = layout.hidden
        h, w = spec.input_size
        self.flat_dim = 32 * layout.pooled_side(h) * layout.pooled_side(w)
        self.normalize = Normalize(spec.mean, spec.std)
        self.features = nn.Sequential(
            nn.Conv2d(spec.in_channels, 32, layout.kernel),
            nn.ReLU(),
            nn.Conv2d(32, 32, layout.kernel),
            nn.ReLU(),
            nn.MaxPool2d(layout.pool),
            nn.Dropout(spec.conv_dropout),
            nn.Flatten(),
        )
        self.head = nn.Sequential(
            nn.Linear(self.flat_dim, self.feature_dim),
            nn.ReLU(),
            nn.Dropout(spec.dropout),
            nn.Linear(self.feature_dim, spec.num_classes),
        )
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)


class TorchvisionNet(nn.Module):
    """A torchvision architecture built with ``weights=None``, first conv fitted to the channels.

    ``body`` is the torchvision network with its own head replaced by ``nn.Identity`` (state keys
    ``body.<torchvision key>``); ``classifier`` is ``Dropout(p)`` + ``Linear(D, C)`` (keys
    ``classifier.1.*``). D is 512 for resnet18, 576 for mobilenet_v3_small (its 1024-unit hidden
    layer is part of the replaced head), 1280 for efficientnet_b0.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.normalize = Normalize(spec.mean, spec.std)
        self.body, self.feature_dim = torchvision_body(spec.architecture, spec.in_channels)
        self.classifier = nn.Sequential(nn.Dropout(spec.dropout), nn.Linear(self.feature_dim, spec.num_classes))

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``[N, D]`` of raw images ``[N, C, H, W]``."""
        return self.backbone(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


# The key of the first convolution's weight, as torchvision names it (inside ``body``).
FIRST_CONV_KEY = {
    "resnet18": "conv1.weight",
    "mobilenet_v3_small": "features.0.0.weight",
    "efficientnet_b0": "features.0.0.weight",
}
# torchvision's own head, replaced by ours: keys under these prefixes are never loaded.
TORCHVISION_HEAD_PREFIX = {"resnet18": "fc.", "mobilenet_v3_small": "classifier.", "efficientnet_b0": "classifier."}


def torchvision_body(architecture: str, in_channels: int) -> tuple[nn.Module, int]:
    from torchvision import models  # imported lazily: the small CNN does not need it

    if architecture == "resnet18":
        net = models.resnet18(weights=None)
        dim = net.fc.in_features
        net.fc = nn.Identity()
        net.conv1 = _with_in_channels(net.conv1, in_channels)
    elif architecture == "mobilenet_v3_small":
        net = models.mobilenet_v3_small(weights=None)
        dim = net.classifier[0].in_features
        net.classifier = nn.Identity()
        net.features[0][0] = _with_in_channels(net.features[0][0], in_channels)
    elif architecture == "efficientnet_b0":
        net = models.efficientnet_b0(weights=None)
        dim = net.classifier[1].in_features
        net.classifier = nn.Identity()
        net.features[0][0] = _with_in_channels(net.features[0][0], in_channels)
    else:  # pragma: no cover - ModelSpec validates the name
        raise ConfigError(f"unknown model architecture {architecture!r}; choose one of: {', '.join(ARCHITECTURES)}")
    return net, dim


def _with_in_channels(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    if conv.in_channels == in_channels:
        return conv
    return nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
        padding=conv.padding, bias=conv.bias is not None,
    )


Model = SmallCNN | GalCNN | TorchvisionNet


def build_model(spec: ModelSpec) -> Model:
    """A freshly initialised network for ``spec`` (current torch seed); never reads ``spec.weights``."""
    if spec.architecture == SMALL_CNN:
        return SmallCNN(spec)
    if spec.architecture in GAL_LAYOUTS:
        return GalCNN(spec)
    return TorchvisionNet(spec)


def regularised_weights(model: Model) -> list[nn.Parameter]:
    """The weight matrices an L2 penalty ``lambda * sum(W ** 2)`` applies to (no biases): the
    hidden dense layer of ``small_cnn`` and ``gal_cnn`` (where Gal et al.'s code regularises);
    empty for torchvision networks, which have no hidden dense layer of ours."""
    return [layer.weight for layer in getattr(model, "regularised", [])]


def classifier_parameters(model: Model) -> list[nn.Parameter]:
    return list(model.classifier.parameters())


def backbone_modules(model: Model) -> Iterator[nn.Module]:
    """Every module of ``model`` outside its classifier (including ``normalize``)."""
    head = {id(m) for m in model.classifier.modules()}
    for module in model.modules():
        if module is not model and id(module) not in head:
            yield module


def backbone_parameters(model: Model) -> list[nn.Parameter]:
    head = {id(p) for p in classifier_parameters(model)}
    return [p for p in model.parameters() if id(p) not in head]


def mc_dropout_mode(model: Model) -> McDropoutMode:
    """``"head_only"`` when every active dropout (p > 0) sits in the classifier, else ``"full_network"``.

    In ``"head_only"`` mode the backbone is deterministic under MC dropout, so its features can
    be computed once per image and only ``classifier`` resampled T times.
    """
    head = {id(m) for m in model.classifier.modules()}
    for module in model.modules():
        if isinstance(module, DROPOUT_TYPES) and module.p > 0 and id(module) not in head:
            return "full_network"
    return "head_only"
