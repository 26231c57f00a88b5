"""Model weights to bytes and back, with a content-derived version string.

Works for every architecture of ``activelabel.pipeline.model``; the ``ModelSpec`` stored next to
the bytes says which network to rebuild. Normalisation (mean/std) lives in the spec, not the bytes.
"""

from __future__ import annotations

import hashlib
import io

import torch
from torch import nn

from activelabel.pipeline.model import Model, ModelSpec, build_model


def serialize_weights(model: nn.Module) -> bytes:
    """The model's state_dict (CPU tensors) as ``torch.save`` bytes, loadable with weights_only."""
    buffer = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, buffer)
    return buffer.getvalue()


def weights_digest(model: nn.Module) -> str:
    """Hash of the parameter values themselves (torch.save bytes are not canonical)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_model(spec: ModelSpec, state: bytes, device: torch.device) -> Model:
    """Rebuild the network of a stored checkpoint, on ``device``, in eval mode.

    ``spec.weights`` (the user's starting weights) is never read here: the checkpoint's own
    bytes are the weights. State dicts of every earlier small CNN (``features.*``, ``head.*``)
    load unchanged. Raises ``RuntimeError`` when the bytes do not fit ``spec``.
    """
    model = build_model(spec)
    model.load_state_dict(torch.load(io.BytesIO(state), map_location="cpu", weights_only=True))
    model.to(device).eval()
    return model
