"""Stochastic prediction: T forward passes with dropout on give probabilities ``[T, N, C]``.

MC dropout (Gal & Ghahramani 2016) keeps dropout active at test time while batch norm uses its
running statistics (eval mode): only dropout is the source of randomness, and the pool never
leaks into the batch-norm statistics.

**One mask per pass, shared by the whole pool.** Pass ``t`` of dropout layer ``k`` multiplies
its input by one mask, row ``t mod B`` of a block of ``B`` masks drawn at once from a generator
seeded with ``(seed, t // B, k)`` (:class:`SharedMasks`); the mask has the input's non-batch
shape and is broadcast over the batch. So pass ``t`` is one model draw
``w_t`` for every sample ("consistent MC dropout", as batchbald_redux calls it). Why:

* BatchBALD's joint ``p(y_1..y_n) = mean_t prod_i p_t(y_i)`` and the stochastic-BALD dedup
  guard only mean something when pass ``t`` is the same network for every sample;
* a sample's probabilities depend only on its pixels, the weights and the seed: never on its
  position in the pool, on the chunk size, or on which worker or shard scored it.

**Three ways to run the passes** (same masks, so the same numbers up to float rounding):

* ``naive``: T full forward passes per chunk (the reference);
* ``full_network``: the layers before the first active dropout run once per chunk, the rest
  runs once on the T copies batched along the batch axis;
* ``head_only``: when every active dropout is in the classifier (``mc_dropout_mode``), the
  backbone runs once per chunk (``embed``) and only the classifier runs on the T copies.

:func:`mc_strategy` says which one a model gets; the round stores it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Literal

import numpy as np
import torch
from torch import nn

from activelabel.pipeline.model import DROPOUT_TYPES, GalCNN, SmallCNN, TorchvisionNet, mc_dropout_mode

_DROPOUT_TYPES = DROPOUT_TYPES
#: The modes :func:`predict_stream` runs; ``deterministic`` is one eval pass (T = 1).
PredictionMode = Literal["deterministic", "naive", "full_network", "head_only"]
#: Largest ``T x b x features`` block (elements) of the sampled part run at once; more passes
#: are split into groups so memory stays bounded for wide feature maps.
_GROUP_ELEMENTS = 1 << 24


@contextmanager
def _restoring_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Put the model in eval mode for the block; every module gets its own mode back after."""
    previous = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, mode in previous.items():
            module.train(mode)


@contextmanager
def mc_dropout(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode everywhere except dropout layers; restores the previous modes on exit.

    Dropout then draws fresh masks per call and per sample (torch's own dropout). The round's
    scoring uses :func:`predict_stream` instead, whose masks are seeded per pass and shared.
    """
    with _restoring_modes(model):
        for module in model.modules():
            if isinstance(module, _DROPOUT_TYPES):
                module.train()
        yield model


def _active_dropouts(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _DROPOUT_TYPES) and m.p > 0]


def _chain(model: nn.Module) -> list[nn.Module] | None:
    """The model as a list of modules applied one after the other, or None if not a chain."""
    if isinstance(model, (SmallCNN, GalCNN)):
        return [model.normalize, *model.features, *model.head]
    if isinstance(model, TorchvisionNet):
        return [model.normalize, model.body, *model.classifier]
    if isinstance(model, nn.Sequential):
        layers: list[nn.Module] = []
        for module in model:
            layers.extend(_chain(module) if isinstance(module, nn.Sequential) else [module])
        return layers
    return None


def mc_strategy(model: nn.Module, samples: int) -> PredictionMode:
    """The mode :func:`predict_stream` uses for ``model`` and ``samples`` (0: deterministic).

    ``head_only`` when the model has ``embed``/``classifier`` and ``mc_dropout_mode`` says so;
    ``full_network`` when the model is a chain (our small CNN, a torchvision net with our head,
    or an ``nn.Sequential``) whose first active dropout is not its first layer; else ``naive``.
    """
    if samples == 0:
        return "deterministic"
    if isinstance(model, (SmallCNN, GalCNN, TorchvisionNet)) and mc_dropout_mode(model) == "head_only":
        return "head_only"
    chain = _chain(model)
    if chain is not None and _split_index(chain) > 0:
        return "full_network"
    return "naive"


def _split_index(chain: Sequence[nn.Module]) -> int:
    """Index of the first layer holding an active dropout (len(chain) if none)."""
    for i, layer in enumerate(chain):
        if _active_dropouts(layer):
            return i
    return len(chain)


#: Passes whose masks one generator draws at once (fewer for wide masks, see :func:`_block_passes`).
_BLOCK_PASSES = 1024
#: Largest block of masks (elements) drawn and cached at once.
_BLOCK_ELEMENTS = 1 << 22
#: Most bytes of mask blocks one :class:`SharedMasks` keeps (64 MiB: four of the largest blocks).
#: Past it, further blocks are drawn afresh each time they are needed instead of kept.
MASK_CACHE_BYTES = 64 << 20


def _mask_seed(seed: int, block: int, module_index: int, member: int = 0) -> int:
    """Generator seed of one block of passes of dropout layer ``module_index`` (SeedSequence of
    ``(seed, block, layer[, member])``): distinct blocks, layers and members draw distinct streams."""
    entropy = [seed % (1 << 64), block, module_index] + ([member] if member else [])
    state = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


def _block_passes(mask_numel: int) -> int:
    """Passes per block for masks of ``mask_numel`` elements: :data:`_BLOCK_PASSES`, fewer when
    that many masks would exceed :data:`_BLOCK_ELEMENTS` (a power of two, at least 1). Depends
    only on the layer's mask shape, never on the chunk or on how many passes run."""
    passes = _BLOCK_PASSES
    while passes > 1 and passes * mask_numel > _BLOCK_ELEMENTS:
        passes //= 2
    return passes


class SharedMasks:
    """Dropout masks seeded per (seed, pass, dropout module), shared by every sample.

    While :meth:`hooked` is active, each active dropout layer of the model (in eval mode, so
    torch's dropout is the identity) multiplies its input by the mask of the current passes
    through a forward hook. The input is either ``[b, ...]`` for one pass (``self.passes`` is
    an int) or ``[len(passes) * b, ...]`` for a group of passes stacked pass-major.
    ``nn.Dropout`` masks have the input's non-batch shape; ``Dropout1d/2d/3d`` masks drop whole
    channels (shape ``[C, 1, ...]``). ``AlphaDropout`` is not supported (``TypeError``).

    **Drawing.** Passes are grouped in fixed blocks of :func:`_block_passes` (mask shape) passes;
    block ``j`` of layer ``k`` is one ``torch.rand([B, *mask_shape])`` from a generator seeded
    :func:`_mask_seed` ``(seed, j, k, member)``, and pass ``t``'s mask is row ``t mod B`` of
    block ``t // B``. So a mask depends only on (seed, pass, layer, member) and the layer's
    shape: never on the chunk size, on which samples run, or on how many passes are asked for
    (the first T passes of a larger T are the same). Why blocks: one reseed per pass (a
    SeedSequence hash and a generator reseed, ~40-60 us) was half the cost of refinement's
    thousands of head passes; one reseed per block of up to 1,024 masks costs ~0.05 us a pass.
    Blocks are cached for the object's life (one round's stage), up to ``cache_bytes``
    (default :data:`MASK_CACHE_BYTES`); blocks past the bound are redrawn when needed, which
    gives the same masks (a block is a function of its seed). Why a bound: a stage walks every
    pass for every chunk, so its blocks would otherwise stay resident for the whole stage:
    1,000 refinement passes of a 32 x 24 x 24 conv dropout (48 x 48 inputs) are 75 MB.
    Why keep-the-first rather than least-recently-used: the passes are visited in the same
    cyclic order for every chunk, where LRU would evict each block just before its next use.
    """

    def __init__(self, model: nn.Module, seed: int, member: int = 0, cache_bytes: int = MASK_CACHE_BYTES) -> None:
        self.seed = seed
        self.member = member
        self.cache_bytes = cache_bytes
        self.cached_bytes = 0
        self.modules = _active_dropouts(model)
        for module in self.modules:
            if isinstance(module, nn.AlphaDropout):
                raise TypeError("shared MC-dropout masks do not support AlphaDropout; use nn.Dropout")
        self.passes: int | range = 0
        # False while deterministic features are computed (dropout is the identity in eval mode).
        self.enabled = True
        self._blocks: dict[tuple[int, int, tuple[int, ...], torch.device], torch.Tensor] = {}
        self._generator = torch.Generator()

    def _mask_shape(self, k: int, shape: tuple[int, ...]) -> tuple[int, ...]:
        if isinstance(self.modules[k], (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
            return (shape[0],) + (1,) * (len(shape) - 1)
        return shape

    def _block(self, k: int, j: int, mask_shape: tuple[int, ...], rows: int, device: torch.device) -> torch.Tensor:
        key = (k, j, mask_shape, device)
        block = self._blocks.get(key)
        if block is None:
            p = self.modules[k].p
            generator = self._generator.manual_seed(_mask_seed(self.seed, j, k, self.member))
            keep = torch.rand((rows, *mask_shape), generator=generator) >= p
            block = (keep.float() / (1.0 - p)).to(device)
            size = block.numel() * block.element_size()
            if self.cached_bytes + size <= self.cache_bytes:
                self._blocks[key] = block
                self.cached_bytes += size
        return block

    def masks(self, k: int, passes: range, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """Masks ``[len(passes), *mask_shape]`` (float32, 0 or 1/(1-p)) of layer ``k`` for the
        passes ``passes`` (a range with step 1) of an input whose non-batch shape is ``shape``."""
        mask_shape = self._mask_shape(k, shape)
        rows = _block_passes(math.prod(mask_shape))
        parts = []
        t = passes.start
        while t < passes.stop:
            j, offset = divmod(t, rows)
            take = min(rows - offset, passes.stop - t)
            parts.append(self._block(k, j, mask_shape, rows, device)[offset:offset + take])
            t += take
        if not parts:
            return torch.zeros((0, *mask_shape), device=device)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def mask(self, k: int, t: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """The mask ``mask_shape`` of layer ``k`` for pass ``t`` (see :meth:`masks`)."""
        return self.masks(k, range(t, t + 1), shape, device)[0]

    def _hook(self, k: int) -> Callable:
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> torch.Tensor | None:
            if not self.enabled:
                return None
            x = inputs[0]
            if isinstance(self.passes, int):
                return x * self.mask(k, self.passes, tuple(x.shape[1:]), x.device).to(x.dtype)
            groups = len(self.passes)
            shape = tuple(x.shape[1:])
            masks = self.masks(k, self.passes, shape, x.device).to(x.dtype)
            y = x.reshape(groups, x.shape[0] // groups, *shape) * masks.unsqueeze(1)
            return y.reshape(x.shape)

        return hook

    @contextmanager
    def disabled(self) -> Iterator[SharedMasks]:
        """No mask for the block: the model runs deterministically (eval-mode dropout)."""
        self.enabled = False
        try:
            yield self
        finally:
            self.enabled = True

    @contextmanager
    def hooked(self) -> Iterator[SharedMasks]:
        """The masks on the model's active dropouts for the block (forward hooks, removed after)."""
        handles = [m.register_forward_hook(self._hook(k)) for k, m in enumerate(self.modules)]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()


def _run_sampled(
    suffix: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor, masks: SharedMasks, passes: int
) -> torch.Tensor:
    """``suffix`` on ``passes`` stacked copies of ``h`` (one mask each): logits ``[T, b, C]``."""
    b = h.shape[0]
    per_pass = max(1, h[0].numel() * b)
    group = max(1, min(passes, _GROUP_ELEMENTS // per_pass))
    outs = []
    for start in range(0, passes, group):
        ts = range(start, min(passes, start + group))
        masks.passes = ts
        stacked = h.unsqueeze(0).expand(len(ts), *h.shape).reshape(len(ts) * b, *h.shape[1:])
        out = suffix(stacked)
        outs.append(out.reshape(len(ts), b, *out.shape[1:]))
    return torch.cat(outs)


def _run_head(classifier: nn.Module, h: torch.Tensor, masks: SharedMasks, passes: int) -> torch.Tensor:
    """Head-only passes: logits ``[T, b, C]`` of ``classifier`` on the shared features ``h`` ``[b, D]``.

    When the classifier is ``nn.Dropout`` then ``nn.Linear`` (our heads), pass ``t`` is
    ``z_t = (h * m_t) W^T + bias`` = ``m_t @ H + bias`` with ``H[k, (i, c)] = h[i, k] W[c, k]``: one
    matrix product of the ``[T, D]`` masks with ``[D, b * C]``, instead of T copies of ``h``
    through the layers (same masks, same products; only the float summation order differs, tested
    against the naive passes). Why: with thousands of passes (refinement) copying ``[T * b, D]``
    features cost ~2 us per sample-pass; the product costs D * C multiply-adds. Other heads, or
    ``b * C * D`` above the group budget, take :func:`_run_sampled`.
    """
    layers = list(classifier) if isinstance(classifier, nn.Sequential) else []
    if (len(layers) != 2 or type(layers[0]) is not nn.Dropout or not isinstance(layers[1], nn.Linear)
            or layers[0] not in masks.modules or h.dim() != 2 or h.shape[0] * h.shape[1] * layers[1].out_features
            > _GROUP_ELEMENTS):
        return _run_sampled(classifier, h, masks, passes)
    linear = layers[1]
    k = masks.modules.index(layers[0])
    b, d = h.shape
    c = linear.out_features
    hw = (h.unsqueeze(1) * linear.weight.to(h.dtype).unsqueeze(0)).reshape(b * c, d).T  # [D, b * C]
    group = max(1, min(passes, _GROUP_ELEMENTS // max(1, b * c)))
    outs = []
    for start in range(0, passes, group):
        m = masks.masks(k, range(start, min(passes, start + group)), (d,), h.device)
        outs.append((m.to(h.dtype) @ hw).reshape(-1, b, c))
    z = torch.cat(outs)
    return z if linear.bias is None else z + linear.bias.to(h.dtype)


def _sequential(layers: Sequence[nn.Module]) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            x = layer(x)
        return x

    return run


def predict_stream(
    model: nn.Module | Sequence[nn.Module],
    chunks: Iterable[torch.Tensor | np.ndarray],
    *,
    samples: int,
    device: torch.device,
    seed: int,
    temperature: float = 1.0,
    logits: bool = False,
    mode: PredictionMode | None = None,
    features: bool = False,
) -> Iterator[np.ndarray] | Iterator[tuple[np.ndarray, np.ndarray]]:
    """Class probabilities ``[T, b, C]`` (float32) for each chunk of images ``[b, C, H, W]``.

    ``samples=0`` means one deterministic pass (T = 1). Chunks are consumed one at a time, so a
    pool of any size streams through with memory bounded by one chunk (the caller reduces each
    chunk to per-sample figures). Dropout masks are seeded per (``seed``, pass, dropout layer)
    and shared by every sample (see the module docstring), so a sample's output does not
    depend on the chunking or on its position.

    ``model`` may be a sequence of M models (a deep ensemble, Lakshminarayanan et al. 2017):
    each chunk then gives ``[M * T, b, C]``, member-major (member m's passes at
    ``[m * T:(m + 1) * T]``), member m's masks seeded with (``seed``, pass, layer, m).

    ``temperature`` divides each pass's logits before the softmax (temperature scaling, Guo et
    al. 2017; 1.0 = none). ``logits=True`` yields the scaled logits ``[T, b, C]`` instead of
    probabilities. ``mode`` forces ``naive``/``full_network``/``head_only`` (default: the
    fastest that applies, :func:`mc_strategy`); a mode that does not apply raises ``ValueError``.

    ``features=True`` yields ``(probs, features)`` pairs instead, ``features`` float32
    ``[b, D]`` being the first member's penultimate features (``embed``) from a deterministic
    pass, no dropout mask (feature density, DDU, Mukhoti et al. 2021, is defined on the
    deterministic features). In head-only mode they are the features the head passes already
    share, so they cost nothing; otherwise one more trunk pass. A model without ``embed``
    raises ``ValueError``.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    members = list(model) if isinstance(model, (list, tuple)) else [model]
    if not members:
        raise ValueError("an ensemble needs at least one model")
    chosen = []
    for net in members:
        picked = mc_strategy(net, samples)
        if mode is not None and samples > 0 and mode != picked:
            if mode not in _applicable_modes(net, picked):
                raise ValueError(f"MC mode {mode!r} does not apply to this model (it gets {picked!r})")
            picked = mode
        chosen.append(picked)
    if features and not hasattr(members[0], "embed"):
        raise ValueError("features=True needs a model with embed() (penultimate features)")
    members = [_inference_copy(net, device) for net in members]
    fast = _channels_last(members[0], device)
    masks = [SharedMasks(net, seed, m) for m, net in enumerate(members)]
    with ExitStack() as stack:
        for net, mask in zip(members, masks):
            stack.enter_context(_restoring_modes(net))
            if samples > 0:
                stack.enter_context(mask.hooked())
        stack.enter_context(torch.no_grad())
        for chunk in chunks:
            x = chunk if isinstance(chunk, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(chunk))
            x = x.to(device)
            if fast and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            outs, feats = [], None
            for m, (net, how, mask) in enumerate(zip(members, chosen, masks)):
                if m == 0 and features:
                    z, feats = _logits_and_features(net, x, samples, how, mask)
                    outs.append(z)
                else:
                    outs.append(_logits(net, x, samples, how, mask))
            out = torch.cat(outs).float() / temperature
            probs = (out if logits else torch.softmax(out, dim=-1)).cpu().numpy()
            yield (probs, feats.float().cpu().numpy()) if features else probs


def _logits_and_features(
    model: nn.Module, x: torch.Tensor, samples: int, mode: PredictionMode, masks: SharedMasks
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[T, b, C]`` and the deterministic penultimate features ``[b, D]``."""
    if mode in ("deterministic", "head_only"):
        h = model.embed(x)  # no active dropout before the head: deterministic features
        if mode == "deterministic":
            return model.classifier(h).unsqueeze(0), h
        return _run_head(model.classifier, h, masks, samples), h
    with masks.disabled():
        h = model.embed(x)
    return _logits(model, x, samples, mode, masks), h


def _channels_last(model: nn.Module, device: torch.device) -> bool:
    """Whether inference on ``device`` runs in channels-last layout: CPU and a conv net.

    Why: on CPU, oneDNN's convolutions, pooling and batch norm run 2-3x faster on NHWC than on
    NCHW tensors for our small CNN (measured: 10,000 MNIST test images, one thread, 3.5 s ->
    1.4 s). Same weights, same masks; only float rounding can differ.
    """
    return device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules())


def _inference_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """The model to predict with: a channels-last copy where :func:`_channels_last` says so (the
    caller's model, which is trained, hashed and serialised, keeps its layout), else itself."""
    if not _channels_last(model, device):
        return model
    import copy

    return copy.deepcopy(model).to(memory_format=torch.channels_last)


def _applicable_modes(model: nn.Module, chosen: PredictionMode) -> set[str]:
    modes = {"naive", chosen}
    chain = _chain(model)
    if chain is not None and _split_index(chain) > 0:
        modes.add("full_network")
    return modes


def _logits(model: nn.Module, x: torch.Tensor, samples: int, mode: PredictionMode, masks: SharedMasks) -> torch.Tensor:
    if mode == "deterministic":
        return model(x).unsqueeze(0)  # eval mode: the hooks' mask is never asked for
    if mode == "naive":
        outs = []
        for t in range(samples):
            masks.passes = t
            outs.append(model(x))
        return torch.stack(outs)
    if mode == "head_only":
        return _run_head(model.classifier, model.embed(x), masks, samples)
    chain = _chain(model)
    assert chain is not None
    split = _split_index(chain)
    h = _sequential(chain[:split])(x)
    return _run_sampled(_sequential(chain[split:]), h, masks, samples)


def predict_probabilities(
    model: nn.Module | Sequence[nn.Module],
    images: np.ndarray,
    *,
    samples: int,
    device: torch.device,
    seed: int,
    batch_size: int = 512,
    on_batch: Callable[[int, int], None] | None = None,
    temperature: float = 1.0,
    logits: bool = False,
    mode: PredictionMode | None = None,
) -> np.ndarray:
    """Class probabilities ``[T, N, C]`` (float32); ``samples=0`` means one deterministic pass.

    The images stream through in chunks of ``batch_size`` (see :func:`predict_stream`, which
    also explains ``temperature``, ``logits`` and ``mode``). ``on_batch(done, total)`` reports
    progress in samples.
    """
    n = len(images)
    starts = range(0, n, batch_size)
    chunks: list[np.ndarray] = []
    stream = predict_stream(
        model, (images[s : s + batch_size] for s in starts), samples=samples, device=device, seed=seed,
        temperature=temperature, logits=logits, mode=mode,
    )
    for start, probs in zip(starts, stream):
        chunks.append(probs)
        if on_batch is not None:
            on_batch(min(start + batch_size, n), n)
    if not chunks:
        members = list(model) if isinstance(model, (list, tuple)) else [model]
        return np.zeros((len(members) * max(samples, 1), 0, _num_classes(members[0])), dtype=np.float32)
    return np.concatenate(chunks, axis=1)


def _num_classes(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return last.out_features
