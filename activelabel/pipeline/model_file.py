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

Ensembles: "activelabel-model/2". A deep-ensemble campaign (``uncertainty = "ensemble"`` or
``"ensemble+mc_dropout"``) predicts with all its members, so its export holds all of them::

    {
        "format": "activelabel-model/2",
        "architecture": {...}, "labels": [...],   # as in /1 (every member has this architecture)
        "members": [{...}, {...}, ...],           # one state_dict per member, in member order (0..M-1)
        "calibration": {"temperature": T1, "mixture_temperature": T2, "predictor": {...}} or None,
        "extra": {...},                           # campaign, version, round, members
    }

The model's predictive distribution is ``softmax(log(mean_m softmax(z_m / T1)) / T2)`` over the
members' logits ``z_m`` (``pipeline.calibration.calibrated_probabilities``); ``calibration`` is
None when the round fitted no temperature (then T1 = T2 = 1: the plain mean of the members'
softmax). ``predictor`` says what the temperatures were fitted for (e.g. ``{"method":
"ensemble", "passes": 1, "members": 3}``; for ``ensemble+mc_dropout`` they were fitted on the
members' MC-dropout passes, which ``LoadedEnsemble.predict`` does not run). ``load_ensemble_file``
gives back every member and that distribution (a /1 file reads as an ensemble of one).

Why a new format and no top-level "state_dict" (rather than /1 plus an optional "members"): an
ensemble must never pass for one of its members. A /1 reader (an older activelabel, or the
snippet above) would take "state_dict" and silently predict with member 0 alone; without it an
older ``load_model_file`` refuses the file (not /1), ``f["state_dict"]`` is a KeyError, and
``load_model_file`` here refuses it naming ``load_ensemble_file``. A campaign's ``[model]
weights`` starts from one network, so it refuses an ensemble file too and says how to save one
member as a plain state_dict file (``torch.save(f["members"][0], "member0.pt")``), which it
takes. Single-model campaigns still write /1 exactly as before. Averaging the members outside
activelabel (each ``net_m`` built and loaded as above from ``f["members"][m]``)::

    cal = f["calibration"] or {"temperature": 1.0, "mixture_temperature": 1.0}
    with torch.no_grad():
        p = torch.stack([torch.softmax(net(x) / cal["temperature"], -1) for net in nets]).mean(0)
        p = torch.softmax(p.log() / cal["mixture_temperature"], -1)  # [N, C]
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
ENSEMBLE_FORMAT = "activelabel-model/2"
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
    return _write(Path(path), payload)


def _write(target: Path, payload: dict) -> Path:
    """``torch.save`` of ``payload`` to ``target`` through a temporary file: never half-written."""
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
    not an activelabel model file, or its weights do not fit its architecture. An ensemble file
    (``activelabel-model/2``) is refused, naming :func:`load_ensemble_file`: one network of it is
    not the model the campaign predicted with.
    """
    path = Path(path)
    payload = _read(path, what="model file")
    count = ensemble_size(payload)
    if count is not None:
        raise WeightsFileError(
            f"{path} holds an ensemble of {count} members ({ENSEMBLE_FORMAT}), not one network; "
            "load it with activelabel.pipeline.model_file.load_ensemble_file"
        )
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        raise WeightsFileError(
            f"{path} is not an activelabel model file (no format {FORMAT!r}); "
            "write one with `activelabel export --model`"
        )
    spec = _file_spec(path, payload)
    model = _network(path, spec, payload.get("state_dict"), "")
    return model, spec, list(payload["labels"])


def ensemble_size(payload: object) -> int | str | None:
    """How many members an ensemble file's ``payload`` holds (``"several"`` when its member list
    is damaged); None when it is no ensemble file. Segmentation ensembles carry ``"members"``
    without a format (``campaign.export``), classification ones the format ``activelabel-model/2``."""
    if not isinstance(payload, Mapping) or not (payload.get("format") == ENSEMBLE_FORMAT or "members" in payload):
        return None
    members = payload.get("members")
    return len(members) if isinstance(members, list) else "several"


def save_one_member_command(path: Path) -> str:
    """The one-line command that saves member 0 of the ensemble file ``path`` as a plain
    state_dict file, which a campaign's ``[model] weights`` takes."""
    return (f"python -c \"import torch; f = torch.load({str(path)!r}, weights_only=True); "
            "torch.save(f['members'][0], 'member0.pt')\"")


def _network(path: Path, spec: ModelSpec, state: object, which: str) -> Model:
    """``spec``'s network (CPU, eval mode) holding ``state``; ``which`` names it in errors
    (``""``, or ``" member 2"``)."""
    model = build_model(spec)
    target = model.state_dict()
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFileError(f"model file {path}{which}: no state_dict of tensors; export the model again")
    problems = _mismatches(state, target, set(target))
    if problems:
        raise WeightsFileError(
            f"model file {path}{which}: weights do not fit its architecture {spec.architecture}: {problems}; "
            "export the model again"
        )
    model.load_state_dict(state, strict=False)  # checked above; only num_batches_tracked may be absent
    return model.eval()


@dataclass(frozen=True)
class LoadedEnsemble:
    """What :func:`load_ensemble_file` gives back: every member (CPU, eval mode, member order),
    the architecture, the labels, the round's temperatures (1.0: none fitted) and provenance.

    ``predict`` is the model's predictive distribution as the module docstring defines it."""

    members: tuple[Model, ...]
    spec: ModelSpec
    labels: list[str]
    temperature: float = 1.0
    mixture_temperature: float = 1.0
    calibration: dict | None = None
    extra: dict | None = None

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``[N, C]`` (float32) of float images ``[N, C, H, W]`` in [0, 1]:
        ``softmax(log(mean_m softmax(z_m / T1)) / T2)``, one deterministic pass per member."""
        x = torch.as_tensor(images, dtype=torch.float32)
        with torch.no_grad():
            log_p = torch.stack([torch.log_softmax(m(x).double() / self.temperature, -1) for m in self.members])
            mixture = torch.logsumexp(log_p, 0) - torch.log(torch.tensor(float(len(self.members)), dtype=torch.float64))
            return torch.softmax(mixture / self.mixture_temperature, -1).float()


def save_ensemble_file(
    path: str | os.PathLike,
    members: Sequence[nn.Module],
    spec: ModelSpec,
    labels: Sequence[str],
    *,
    calibration: Mapping | None = None,
    extra: dict | None = None,
) -> Path:
    """Write an ensemble (``members`` in member order, all of ``spec``'s architecture) as one
    ``activelabel-model/2`` file (atomically); returns the path.

    ``calibration``: the round's ``{"temperature", "mixture_temperature", "predictor"}``, or None
    when it fitted none. Raises ``ValueError`` as :func:`save_model_file` does, and for fewer
    than two members (one model is a /1 file: :func:`save_model_file`)."""
    if len(members) < 2:
        raise ValueError(f"an ensemble file needs at least 2 members, got {len(members)}; use save_model_file")
    labels = [str(label) for label in labels]
    if len(labels) != spec.num_classes:
        raise ValueError(f"{len(labels)} labels for a model with {spec.num_classes} classes")
    payload = {
        "format": ENSEMBLE_FORMAT,
        "architecture": spec.to_dict(),
        "labels": labels,
        "members": [{k: v.detach().cpu().clone() for k, v in m.state_dict().items()} for m in members],
        "calibration": None if calibration is None else dict(calibration),
        "extra": dict(extra or {}),
    }
    try:
        json.dumps([payload["calibration"], payload["extra"]])
    except TypeError as error:
        raise ValueError(f"model file calibration and extra must be JSON-like: {error}") from None
    return _write(Path(path), payload)


def load_ensemble_file(path: str | os.PathLike) -> LoadedEnsemble:
    """Read an ``activelabel export --model`` file as the ensemble it holds: every member, in
    member order, with the round's temperatures; a single-model (/1) file is an ensemble of one
    (temperatures 1.0: /1 files carry none).

    Raises ``WeightsFileError`` (one line naming the file, and the member) as
    :func:`load_model_file` does."""
    path = Path(path)
    payload = _read(path, what="model file")
    if isinstance(payload, Mapping) and payload.get("format") == FORMAT:
        model, spec, labels = load_model_file(path)
        return LoadedEnsemble((model,), spec, labels, extra=dict(payload.get("extra") or {}))
    if not isinstance(payload, Mapping) or payload.get("format") != ENSEMBLE_FORMAT:
        raise WeightsFileError(
            f"{path} is not an activelabel model file (no format {FORMAT!r} or {ENSEMBLE_FORMAT!r}); "
            "write one with `activelabel export --model`"
        )
    spec = _file_spec(path, payload)
    states = payload.get("members")
    if not isinstance(states, list) or len(states) < 2:
        raise WeightsFileError(f"model file {path}: an ensemble file without a list of members; export the model again")
    members = tuple(_network(path, spec, state, f" member {m}") for m, state in enumerate(states))
    calibration = payload.get("calibration")
    if calibration is not None and not isinstance(calibration, Mapping):
        raise WeightsFileError(f"model file {path}: calibration is not a dict; export the model again")
    calibration = dict(calibration) if calibration is not None else None
    t1, t2 = (1.0, 1.0) if calibration is None else (
        float(calibration.get("temperature", 1.0)), float(calibration.get("mixture_temperature", 1.0)))
    if not (t1 > 0 and t2 > 0):
        raise WeightsFileError(f"model file {path}: temperatures must be > 0, got {t1} and {t2}; export the model again")
    return LoadedEnsemble(members, spec, list(payload["labels"]), t1, t2, calibration,
                          dict(payload.get("extra") or {}))


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
      skipped the same way. An ensemble file (``activelabel-model/2``) is refused, with the
      one-line command that saves one member as a state_dict file this function takes: a
      campaign starts from one network, and which member it is should be the user's choice.

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
    count = ensemble_size(payload)
    if count is not None:
        raise WeightsFileError(
            f"{where}: it is an activelabel ensemble of {count} members ({ENSEMBLE_FORMAT}), and a campaign "
            f"starts from one network; save the member you want as its own file and give that one: "
            f"{save_one_member_command(path)}"
        )
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
