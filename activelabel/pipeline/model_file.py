"""Model files in and out: the exported model (weights + architecture + labels) and user weights files.

An activelabel model file is one ``torch.save`` of a plain dict, loadable with
``torch.load(path, weights_only=True)`` (no pickled code)::

    {
        "format": "activelabel-model/1",
        "architecture": {...},          # ModelSpec.to_dict(): "name", "in_channels", "num_classes",
                                        # "head_dropout", and "mean"/"std" when the model normalises;
                                        # gal_cnn(_keras) also "conv_dropout" and "input_size" [H, W]
        "labels": ["cat", "dog", ...],  # class index i is labels[i]
        "state_dict": {...},            # tensors on CPU
        "extra": {...},                 # JSON-like provenance (campaign, round, model version)
    }

With activelabel installed, ``load_model_file(path)`` gives back the network. Without it, a
torchvision architecture loads into torchvision itself (here resnet18; mobilenet_v3_small and
efficientnet_b0 differ only in where the first conv and the head sit)::

    import torch, torchvision

    f = torch.load("model.pt", weights_only=True)
    arch, sd = f["architecture"], f["state_dict"]
    net = torchvision.models.resnet18(weights=None)
    net.conv1 = torch.nn.Conv2d(arch["in_channels"], 64, 7, 2, 3, bias=False)
    net.fc = torch.nn.Sequential(torch.nn.Dropout(arch["head_dropout"]),
                                 torch.nn.Linear(512, arch["num_classes"]))
    state = {k.removeprefix("body."): v for k, v in sd.items() if k.startswith("body.")}
    state |= {"fc." + k.removeprefix("classifier."): v for k, v in sd.items()
              if k.startswith("classifier.")}
    net.load_state_dict(state)
    net.eval()
    # Inputs: float images [N, C, H, W] in [0, 1]; when arch has "mean"/"std", feed
    # (x - mean) / std per channel. Class i of the output is f["labels"][i].
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from activelabel.errors import ActiveLabelError, WeightsFileError
from activelabel.pipeline.model import (
    FIRST_CONV_KEY,
    GAL_LAYOUTS,
    SMALL_CNN,
    TORCHVISION_HEAD_PREFIX,
    Model,
    ModelSpec,
    build_model,
)

FORMAT = "activelabel-model/1"
_SHOWN_KEYS = 3


def save_model_file(
    path: str | os.PathLike,
    model: nn.Module,
    spec: ModelSpec,
    labels: Sequence[str],
    *,
    extra: dict | None = None,
) -> Path:
    """Write ``model`` with its architecture and label set to ``path`` (atomically); returns the path.

    ``labels[i]`` names output class ``i``; ``extra`` holds JSON-like provenance. Raises
    ``ValueError`` when the label count differs from ``spec.num_classes`` or ``extra`` is not
    JSON-serialisable (so that the file stays loadable with ``weights_only=True``).
    """
    labels = [str(label) for label in labels]
    if len(labels) != spec.num_classes:
        raise ValueError(f"{len(labels)} labels for a model with {spec.num_classes} classes")
    extra = dict(extra or {})
    try:
        json.dumps(extra)
    except TypeError as error:
        raise ValueError(f"model file extra must be JSON-like: {error}") from None
    payload = {
        "format": FORMAT,
        "architecture": spec.to_dict(),
        "labels": labels,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "extra": extra,
    }
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load_model_file(path: str | os.PathLike) -> tuple[Model, ModelSpec, list[str]]:
    """Read a file written by ``save_model_file``: the network (CPU, eval mode), its spec, its labels.

    Raises ``WeightsFileError`` (one line naming the file) when the file is missing, unreadable,
    not an activelabel model file, or its weights do not fit its architecture.
    """
    path = Path(path)
    payload = _read(path, what="model file")
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        raise WeightsFileError(
            f"{path} is not an activelabel model file (no format {FORMAT!r}); "
            "write one with `activelabel export --model`"
        )
    spec = _file_spec(path, payload)
    model = build_model(spec)
    state = payload.get("state_dict")
    target = model.state_dict()
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFileError(f"model file {path}: no state_dict of tensors; export the model again")
    problems = _mismatches(state, target, set(target))
    if problems:
        raise WeightsFileError(
            f"model file {path}: weights do not fit its architecture {spec.architecture}: {problems}; "
            "export the model again"
        )
    model.load_state_dict(state, strict=False)  # checked above; only num_batches_tracked may be absent
    return model.eval(), spec, list(payload["labels"])


@dataclass(frozen=True)
class LoadedWeights:
    """What ``load_backbone_weights`` did: tensors loaded, file keys skipped as head, channel sum."""

    loaded: int
    skipped: tuple[str, ...]
    summed_first_conv: bool


def load_backbone_weights(model: Model, spec: ModelSpec) -> LoadedWeights:
    """Load the backbone of ``model`` from the user weights file ``spec.weights``; the head stays new.

    Accepted files (read with ``torch.load(weights_only=True)``, nothing is downloaded):

    - a full-model state_dict in torchvision's naming for ``spec.architecture`` (e.g. a resnet18
      ImageNet file the user obtained): torchvision's head (``fc.*`` / ``classifier.*``) is
      skipped, whatever its class count, since the campaign's label set is its own;
    - an activelabel state_dict or model file (``activelabel export --model``) of the same
      architecture (and width, for ``small_cnn``; image size, for ``gal_cnn`` and ``gal_cnn_keras``): its classifier is
      skipped the same way.

    The classifier (head dropout + final linear layer) always keeps its fresh initialisation.
    A first convolution trained on 3 channels is loaded into a 1-channel model by summing its
    weights over the input channels (a grey image seen as R = G = B gives the same response).
    The model's normalisation comes from ``spec`` (mean/std), never from the file.

    Raises ``WeightsFileError`` (one line: the file, the architecture, the first offending keys
    and what to do) for a missing or unreadable file, another architecture, missing or
    unexpected keys, or a shape mismatch beyond the first-conv case. The model is untouched
    when it raises.
    """
    if spec.weights is None:
        raise ValueError("spec.weights is None: no weights file to load")
    path = Path(spec.weights).expanduser()
    payload = _read(path, what="weights file")
    arch = spec.architecture
    where = f"weights file {path} for {arch} ({spec.in_channels} channel(s))"
    if isinstance(payload, Mapping) and "format" in payload:
        if payload.get("format") != FORMAT:
            raise WeightsFileError(f"{where}: unknown format {payload.get('format')!r}; expected {FORMAT!r}")
        file_spec = _file_spec(path, payload)
        if file_spec.architecture != arch:
            raise WeightsFileError(
                f"{where}: it is an activelabel {file_spec.architecture} model, not {arch}; "
                f"set the architecture to {file_spec.architecture} or give a {arch} file"
            )
        state = payload.get("state_dict")
    elif isinstance(payload, Mapping) and isinstance(payload.get("state_dict"), Mapping):
        state = payload["state_dict"]
    else:
        state = payload
    if not isinstance(state, Mapping) or not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsFileError(
            f"{where}: the file holds no state_dict of tensors; save one with "
            "torch.save(model.state_dict(), path)"
        )

    target = model.state_dict()
    head_prefixes = _classifier_prefixes(model)
    wanted = {k for k in target if not k.startswith(head_prefixes)}
    native = arch in (SMALL_CNN, *GAL_LAYOUTS) or any(k.startswith("body.") for k in state)
    file_head = head_prefixes if native else (TORCHVISION_HEAD_PREFIX[arch],)
    translated: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for key, value in state.items():
        if key.startswith(file_head):
            skipped.append(key)
            continue
        translated[key if native else f"body.{key}"] = value

    first_conv = "features.0.weight" if arch in (SMALL_CNN, *GAL_LAYOUTS) else f"body.{FIRST_CONV_KEY[arch]}"
    summed = False
    conv = translated.get(first_conv)
    if (
        conv is not None and first_conv in target and conv.ndim == 4 and conv.shape[1] == 3
        and spec.in_channels == 1 and conv.shape[:1] + conv.shape[2:] == target[first_conv].shape[:1] + target[first_conv].shape[2:]
    ):
        translated[first_conv] = conv.sum(dim=1, keepdim=True)
        summed = True

    problems = _mismatches(translated, target, wanted, shown_prefix="" if native else "body.")
    if problems:
        guess = "" if native else _guess_architecture(state.keys(), arch)
        hint = f"it looks like a {guess} state_dict: set the architecture to {guess}, or " if guess else ""
        raise WeightsFileError(
            f"{where} does not match: {problems}; {hint}give a {arch} state_dict "
            f"(torch.save(model.state_dict(), path)) or an activelabel {arch} model file"
        )
    loadable = {k: v for k, v in translated.items() if k in wanted}
    with torch.no_grad():
        model.load_state_dict(loadable, strict=False)
    return LoadedWeights(loaded=len(loadable), skipped=tuple(skipped), summed_first_conv=summed)


def build_model_for_training(spec: ModelSpec) -> Model:
    """A fresh network for ``spec``, its backbone loaded from ``spec.weights`` when one is given.

    Also the check a campaign runs before writing anything: it raises ``WeightsFileError``
    exactly when training would.
    """
    model = build_model(spec)
    if spec.weights is not None:
        load_backbone_weights(model, spec)
    return model


def _mismatches(
    state: Mapping[str, torch.Tensor],
    target: Mapping[str, torch.Tensor],
    wanted: set[str],
    *,
    shown_prefix: str = "",
) -> str:
    """Empty when ``state`` has exactly the ``wanted`` keys of ``target`` with their shapes.

    Otherwise the problems on one line, keys shown without ``shown_prefix`` (as the file names them).
    """

    def shown(key: str) -> str:
        return key.removeprefix(shown_prefix)

    missing = sorted(shown(k) for k in wanted - state.keys() if not k.endswith("num_batches_tracked"))
    unexpected = sorted(shown(k) for k in state.keys() - wanted)
    mismatched = [
        f"{shown(k)} {list(state[k].shape)} vs {list(target[k].shape)}"
        for k in sorted(state.keys() & wanted)
        if state[k].shape != target[k].shape
    ]
    return "; ".join(
        f"{len(items)} {kind} ({_few(items)})"
        for kind, items in (("missing key(s)", missing), ("unexpected key(s)", unexpected),
                            ("shape mismatch(es), file vs model", mismatched))
        if items
    )


def _guess_architecture(keys: Iterable[str], architecture: str) -> str | None:
    """The other torchvision architecture whose state keys (head aside) are exactly ``keys``."""
    from activelabel.pipeline.model import TORCHVISION_ARCHITECTURES, torchvision_body

    def body_keys(names: Iterable[str], arch: str) -> set[str]:
        return {k for k in names if not k.startswith(TORCHVISION_HEAD_PREFIX[arch]) and not k.endswith("num_batches_tracked")}

    for other in TORCHVISION_ARCHITECTURES:
        if other == architecture:
            continue
        body, _ = torchvision_body(other, 3)
        if body_keys(keys, other) == body_keys(body.state_dict().keys(), other):
            return other
    return None


def _classifier_prefixes(model: Model) -> tuple[str, ...]:
    head = {id(m) for m in model.classifier.modules()}
    return tuple(
        f"{name}." for name, module in model.named_modules()
        if id(module) in head and not list(module.children())
    )


def _read(path: Path, *, what: str) -> object:
    if not path.is_file():
        raise WeightsFileError(f"{what} {path} not found; give the path of a file saved with torch.save")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt or pickled-code file
        raise WeightsFileError(
            f"{what} {path} cannot be read as plain tensors ({_first_line(error)}); "
            "save a state_dict with torch.save(model.state_dict(), path)"
        ) from None


def _file_spec(path: Path, payload: Mapping) -> ModelSpec:
    try:
        spec = ModelSpec.from_dict(dict(payload["architecture"]))
    except (ActiveLabelError, KeyError, TypeError, ValueError) as error:
        raise WeightsFileError(f"model file {path}: unusable architecture: {_first_line(error)}") from None
    if not isinstance(payload.get("labels"), list) or len(payload["labels"]) != spec.num_classes:
        raise WeightsFileError(f"model file {path}: its labels do not match its {spec.num_classes} classes")
    if spec.weights is not None:  # provenance only: never read again
        spec = ModelSpec.from_dict({**spec.to_dict(), "weights": None})
    return spec


def _few(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_SHOWN_KEYS])
    return shown + (", …" if len(items) > _SHOWN_KEYS else "")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
