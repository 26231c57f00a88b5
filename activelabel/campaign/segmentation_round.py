"""The segmentation kind's part of a round: train a U-Net on masks, score images by per-pixel
uncertainty, draw heatmaps of what was selected (see :mod:`activelabel.campaign.kinds`).

- **Labels** are masks stored with the annotations (``annotation.mask``, PNG bytes). A sample
  with several annotators' masks trains on their per-pixel majority; ties and unpainted pixels
  become ``ignore_index`` (``annotation.mask_votes.majority_mask``).
- **Training**: per-pixel cross-entropy with ``ignore_index`` (``pipeline.segmentation``), batch
  8 and learning rate 5e-3, at least 200 steps (``epochs`` may ask for more).
- **Calibration** (``calibrate``, from 20 labeled images on): a share of the labeled images is
  held out of training and a per-pixel temperature fitted on their pixels, kept only if it
  lowers the out-of-fold pixel NLL (folds by image); stored in ``round.calibration`` with the
  yardstick's pixel NLL/ECE before and after (``campaign.segmentation_calibration``).
- **Yardstick**: the test split's given masks, or the evaluation split's annotated masks;
  mIoU, per-class IoU, pixel accuracy and pixel ECE go to ``round.segmentation_metrics``,
  pixel accuracy and pixel ECE also to ``round.test_accuracy`` / ``round.test_ece`` (what
  status, reports and the stopping rules read).
- **Ensembles** (``uncertainty = "ensemble"`` / ``"ensemble+mc_dropout"``; Lakshminarayanan
  et al. 2017): ``ensemble_size`` U-Nets trained with classification's member seeds
  (``steps.member_seed``), each stored as a checkpoint ``member``; measuring, calibration,
  scores and heatmaps use all of them (the members' mean softmax; their stacked passes).
- **Scores**: per chunk of pool images, MC-dropout probabilities ``[T, b, C, H, W]`` (T = M x
  passes for an ensemble, member-major; each pass's
  logits divided by the round's kept temperature, 1.0 without one) become
  per-pixel maps (``acquisition.pixelwise``); the strategy's map is aggregated per image by
  ``aggregation`` (mean, max, top_q, class_weighted: weights are the inverse pixel frequencies
  of the classes in the masks the round trained on, stored with the checkpoint and in
  ``round.uncertainty``). The decomposition columns hold image
  means of the per-pixel maps: ``total`` = mean entropy, ``epistemic`` = mean BALD,
  ``aleatoric`` = their difference (mean expected entropy), all in nats; ``confidence`` = mean
  max softmax. ``predicted_class`` is -1: an image has no single predicted class.
- **Heatmaps**: before the selection leaves, one PNG per selected sample (image | predicted
  mask | the strategy's map | max-softmax map), from the same checkpoint, dropout seed and
  temperature as the scores, so the map drawn is the map that was scored.
"""

from __future__ import annotations

import functools
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select

from activelabel.acquisition.pixelwise import aggregate, class_pixel_counts, inverse_frequency_weights, pixel_maps
from activelabel.annotation.mask_votes import majority_mask, mean_pairwise_iou
from activelabel.campaign.chance import chance_advice, chance_clause
from activelabel.campaign.config import SEGMENTATION_STRATEGY_MAPS, CampaignConfig
from activelabel.campaign.data import campaign_data
from activelabel.campaign.kinds import Trained, TrainInput
from activelabel.campaign.model_settings import training_config, training_record
from activelabel.campaign.segmentation_calibration import fit_segmentation_calibration, validation_images
from activelabel.campaign.pixels import read_readable, stream_probabilities
from activelabel.campaign.summary import trained_on_words
from activelabel.pipeline.device import resolve_device
from activelabel.pipeline.heatmaps import heatmap_filenames, write_heatmap
from activelabel.pipeline.masks import IGNORE_INDEX, mask_from_png_bytes, mask_to_png_bytes, resize_mask
from activelabel.pipeline.prediction import mc_strategy
from activelabel.pipeline.segmentation import evaluate_segmentation, predict_segmentation_stream, train_segmentation
from activelabel.pipeline.segmentation_model import SegmentationSpec, build_segmentation_model
from activelabel.pipeline.training import planned_epochs
from activelabel.progress import reporter
from activelabel.storage import ModelCheckpoint, RoundKind, Sample, Selection, session_scope
from activelabel.storage.repository import annotation_masks

log = logging.getLogger(__name__)

#: Images per chunk when scoring: T x 32 x C x H x W float32 at a time.
CHUNK = 32


def segmentation_spec(config: CampaignConfig, in_channels: int, num_classes: int) -> SegmentationSpec:
    """The U-Net a segmentation round trains (``architecture``: unet_small or smp_unet), from
    ``weights`` (a user weights file) when the campaign names one."""
    return SegmentationSpec(in_channels=in_channels, num_classes=num_classes, architecture=config.architecture,
                            dropout=config.dropout, weights=config.weights, mean=config.mean, std=config.std)


#: Key of the checkpoint's architecture dict holding the labeled pixels per class the round
#: trained on (not a network setting: :func:`load_segmenter` drops it before building).
CLASS_PIXELS = "class_pixels"


@dataclass(frozen=True)
class ResolvedMask:
    """A sample's training mask ``[H, W]`` int64 and where it came from: ``votes`` accepted
    masks, their ``agreement`` (mean pairwise IoU, ``annotation.mask_votes.mean_pairwise_iou``;
    1.0 for a single mask, as a single classification vote agrees with itself)."""

    mask: np.ndarray
    votes: int
    agreement: float


def resolved_mask_labels(engine, campaign_id: int, num_classes: int) -> dict[int, ResolvedMask]:
    """Each annotated sample's resolved mask, derived from its accepted masks: the one mask, or
    the per-pixel majority of several annotators' masks (ties and unpainted pixels:
    ``IGNORE_INDEX``), with their agreement. Derived on each call, never stored twice (DESIGN)."""
    with session_scope(engine) as session:
        votes = annotation_masks(session, campaign_id)
    out = {}
    for sample_id, blobs in votes.items():
        masks = _same_size([mask_from_png_bytes(b, where=f"annotation mask of sample {sample_id}") for b in blobs])
        if len(masks) == 1:
            out[sample_id] = ResolvedMask(masks[0], 1, 1.0)
            continue
        agreement = mean_pairwise_iou(masks, num_classes, ignore_index=IGNORE_INDEX)
        out[sample_id] = ResolvedMask(majority_mask(masks, num_classes, ignore_index=IGNORE_INDEX), len(masks),
                                      agreement)
    return out


def _same_size(masks: list[np.ndarray]) -> list[np.ndarray]:
    """One image's masks at one size for the vote: the largest one's (nearest neighbour). They
    differ only when the image was painted both embedded (training size) and served (its own)."""
    height, width = max(m.shape for m in masks)
    return [resize_mask(m, height, width) for m in masks]  # a mask of that size comes back as it is


def resolved_masks(engine, campaign_id: int, num_classes: int) -> dict[int, np.ndarray]:
    """Each annotated sample's mask ``[H, W]`` int64 (see :func:`resolved_mask_labels`), at the
    size it was painted: the training size for embedded images, the file's own for served ones."""
    return {i: r.mask for i, r in resolved_mask_labels(engine, campaign_id, num_classes).items()}


def _masks_by_uri(engine, campaign_id: int, num_classes: int, size: int) -> dict[str, np.ndarray]:
    """The resolved masks by URI at the training size ``size x size``: a mask painted on a served
    image at its natural size is resized by nearest neighbour, as the campaign's mask files are."""
    by_id = resolved_masks(engine, campaign_id, num_classes)
    with session_scope(engine) as session:
        uris = dict(session.execute(select(Sample.id, Sample.uri).where(Sample.campaign_id == campaign_id)).all())
    return {uris[i]: resize_mask(m, size) for i, m in by_id.items()}  # unchanged at the training size


def train_segmenter(job: TrainInput) -> Trained:
    """Train the round's U-Net (``ensemble_size`` of them, seeds ``steps.member_seed``, for the
    ensemble methods) on the labeled pool's masks and measure it (the members' mean softmax) on
    the yardstick."""
    from activelabel.campaign.steps import ensemble_members, member_seed

    rnd, campaign, config, data = job.rnd, job.campaign, job.config, job.data
    num_classes = len(campaign.labels)
    masks = _masks_by_uri(job.engine, campaign.id, num_classes, int(data.store.size))
    labeled = [s for s in job.labeled if s.uri in masks]
    x, kept, problems = read_readable(data.store, [s.uri for s in labeled])
    labeled = [labeled[i] for i in kept]
    size = x.shape[2:] if len(labeled) else (1, 1)
    y = np.stack([masks[s.uri] for s in labeled]).astype(np.int64) if labeled else np.zeros((0, *size), np.int64)
    # Calibration: a share of the labeled images is held out of training to fit the per-pixel
    # temperature on (campaign.segmentation_calibration); none below MIN_IMAGES.
    held = validation_images(len(labeled), job.seed) if config.calibrate else np.zeros(0, np.int64)
    train = np.setdiff1d(np.arange(len(labeled)), held)
    spec = segmentation_spec(config, data.in_channels, num_classes)
    training = replace(training_config(config, len(train)), batch_size=8, learning_rate=5e-3)
    progress = reporter()
    # Deep ensembles: M U-Nets from different seeds (member 0 is the single model's seed), as
    # classification derives them (steps.member_seed).
    members = ensemble_members(config)
    what = f"{members} {spec.architecture}s" if members > 1 else f"a {spec.architecture}"
    progress.phase(f"round {rnd.index} · training {what} on {len(train)} masks",
                   planned_epochs(len(train), training, skips_batch_of_one=True))  # batch norm: see below
    models = [train_segmentation(x[train], y[train], spec, training, seed=member_seed(job.seed, member),
                                 device=job.device, ignore_index=IGNORE_INDEX,
                                 on_epoch=lambda epoch, _epochs, _loss: progress.advance(epoch))
              for member in range(members)]
    model = models if members > 1 else models[0]
    # the labeled pixels per class it trained on: class_weighted scoring's inverse frequencies
    pixels = class_pixel_counts(y[train], num_classes, ignore_index=IGNORE_INDEX)
    architecture = spec.to_dict() | {CLASS_PIXELS: pixels.tolist()}
    measuring = time.perf_counter()
    measured = _measure(model, data, job.yard_uris, masks, job.device, problems)
    metrics = measured[0] if measured else None
    calibration = None
    if len(held):
        yard_images, yard_masks = measured[1:] if measured else (None, None)
        calibration = fit_segmentation_calibration(model, x[held], y[held], yard_images, yard_masks, job.device,
                                                   samples=_samples(config), seed=job.seed, method=config.uncertainty,
                                                   ignore_index=IGNORE_INDEX)
    evaluate_seconds = time.perf_counter() - measuring
    # A U-Net skips a last batch of one (batch norm) and a batch whose pixels are all ignored
    # (the latter is not counted: "steps" is then at most that many).
    record = training_record(config, training, len(train), members=len(models), held_out=len(held),
                             skips_batch_of_one=True, recipe="segmentation")
    values = dict(test_accuracy=None, test_nll=None, test_ece=None, calibration=calibration,
                  segmentation_metrics=None, training=record)
    if metrics is None:
        return Trained(models, architecture, len(labeled), values, problems, logging.WARNING,
                       f"Round {rnd.index}: {trained_on_words(len(train), len(held), 'mask')}; no test or "
                       "labeled evaluation sample to measure on", evaluate_seconds)
    values.update(
        test_accuracy=metrics.pixel_accuracy, test_ece=metrics.pixel_ece,
        segmentation_metrics={
            "miou": metrics.miou,
            "per_class_iou": {name: (None if np.isnan(v) else float(v))
                              for name, v in zip(campaign.labels, metrics.per_class_iou)},
            "pixel_accuracy": metrics.pixel_accuracy,
            "pixel_ece": metrics.pixel_ece,
            "pixels": metrics.pixels,
        },
    )
    calibrated = ""
    if calibration and calibration.get("before") and calibration.get("after"):
        calibrated = (f"; temperature {calibration['temperature']:.3f} on {len(held)} held-out masks, pixel ECE "
                      f"{calibration['before']['ece']:.3f} -> {calibration['after']['ece']:.3f}")
    yard_masks = measured[2]
    chance = chance_clause(metrics.pixel_accuracy, yard_masks[yard_masks != IGNORE_INDEX], campaign.labels,
                           unit="labeled pixels", measure="pixel accuracy")
    line = trained_line(f"Round {rnd.index}: trained {what} on {len(train)} masks", metrics.miou,
                        metrics.pixel_accuracy, metrics.pixel_ece, calibrated, chance,
                        advice=chance_advice(campaign.name, rnd.index, config.fixed_epochs))
    return Trained(models, architecture, len(labeled), values, problems,
                   logging.INFO if chance is None else logging.WARNING, line, evaluate_seconds)


def trained_line(trained: str, miou: float, pixel_accuracy: float, pixel_ece: float, calibrated: str,
                 chance: str | None, advice: str | None = None) -> str:
    """The round's training line: ``trained`` (what was trained on what), its mIoU, pixel
    accuracy and pixel ECE, then ``calibrated``. At chance (``chance``: the
    :func:`~activelabel.campaign.chance.chance_clause` of the pixel accuracy) the pixel accuracy
    leads, as it is the number compared, and the mIoU follows (trial 15 F5: "mIoU 0.414 (pixel
    accuracy 0.759, ...): that is no better than chance (0.846 ...)" read as 0.414 vs 0.846)."""
    if chance is None:
        return f"{trained}, mIoU {miou:.3f} (pixel accuracy {pixel_accuracy:.3f}, pixel ECE {pixel_ece:.3f}){calibrated}"
    return f"{trained}: {chance}; mIoU {miou:.3f}, pixel ECE {pixel_ece:.3f}{calibrated}; so {advice or chance_advice()}"


def _measure(model, data, yard_uris: list[str], annotated: dict[str, np.ndarray], device, problems):
    """(metrics of one deterministic pass over the yardstick, its images ``[N, C, H, W]``, its
    masks ``[N, H, W]``) (annotated masks first, then the given test masks); None without a
    readable yardstick sample with a mask. ``model``: one U-Net or an ensemble's members
    (metrics of the mean of their softmaxes)."""
    given = data.given_masks or {}
    uris = [u for u in yard_uris if u in annotated or u in given]
    if not uris:
        return None
    images, kept, found = read_readable(data.store, uris)
    problems.extend(found)
    if not kept:
        return None
    truth = np.stack([annotated[uris[i]] if uris[i] in annotated else given[uris[i]] for i in kept]).astype(np.int64)
    return evaluate_segmentation(model, images, truth, device=device, ignore_index=IGNORE_INDEX), images, truth


def load_segmenter(checkpoint: ModelCheckpoint, device: torch.device):
    """The stored round's U-Net, on ``device``, in eval mode."""
    architecture = {k: v for k, v in checkpoint.architecture.items() if k != CLASS_PIXELS}
    model = build_segmentation_model(SegmentationSpec.from_dict(architecture))
    model.load_state_dict(torch.load(io.BytesIO(checkpoint.state), map_location="cpu", weights_only=True))
    return model.to(device).eval()


def _samples(config: CampaignConfig) -> int:
    """MC-dropout passes per member: none for ``deterministic`` and plain ``ensemble``."""
    return 0 if config.uncertainty in ("deterministic", "ensemble") else config.mc_samples


def load_members(checkpoints, device: torch.device) -> list:
    """The round's U-Nets (one per ensemble member, in member order), on ``device``, in eval mode."""
    return [load_segmenter(c, device) for c in sorted(checkpoints, key=lambda c: c.member)]


def score_pool_pixelwise(rnd, config: CampaignConfig, checkpoints, pool, problems, *, seed: int):
    """Score rows of ``pool`` (``storage.bulk.SCORE_COLUMNS`` order), chunk by chunk.

    With ``class_weighted`` aggregation the class weights are the inverse pixel frequencies of
    the masks the round's model trained on (``acquisition.pixelwise.inverse_frequency_weights``
    of the checkpoint's ``class_pixels``); they and the counts are stored in
    ``round.uncertainty`` (``class_weights``, ``class_pixels``, class-index order). A checkpoint
    without counts (written before they were kept) weighs each image's predicted classes
    equally, as before.
    """
    from activelabel.campaign.steps import ScoredPool, _acquisition_temperature

    temperature = _acquisition_temperature(rnd, config)
    data = campaign_data(config)
    device = resolve_device(config.device)
    models = load_members(checkpoints, device)
    model = models if len(models) > 1 else models[0]
    samples = _samples(config)
    map_name = SEGMENTATION_STRATEGY_MAPS[rnd.strategy]
    pixels = checkpoints[0].architecture.get(CLASS_PIXELS)
    class_weights = None
    if config.aggregation == "class_weighted" and pixels is not None:
        class_weights = inverse_frequency_weights(pixels)
    rng = np.random.default_rng(seed)
    progress = reporter()
    progress.phase(f"round {rnd.index} · scoring {len(pool)} pool images × {len(models) * max(samples, 1)} passes",
                   len(pool))
    rows: list[tuple] = []
    entropy_sum = 0.0
    for positions, logits in stream_probabilities(
        model, data.store, [s.uri for s in pool], samples=samples, device=device, seed=seed,
        workers=config.loader_workers, batch_size=CHUNK, problems=problems, on_batch=progress.advance, logits=True,
        temperature=temperature,
    ):
        probs = torch.softmax(torch.from_numpy(logits), dim=2).numpy()  # [T, b, C, H, W]
        maps = pixel_maps(probs)
        if map_name is None:
            values = rng.random(len(positions))
        else:
            per_pixel = 1.0 - maps.max_softmax if map_name == "max_softmax" else maps.get(map_name)
            values = aggregate(per_pixel, config.aggregation, q=config.aggregation_q,  # type: ignore[arg-type]
                               predicted=maps.predicted, class_weights=class_weights)
        total = maps.entropy.mean(axis=(1, 2))
        epistemic = maps.bald.mean(axis=(1, 2))
        confidence = maps.max_softmax.mean(axis=(1, 2))
        entropy_sum += float(total.sum())
        rows.extend(
            (rnd.id, pool[int(i)].id, rnd.strategy, float(v), -1, float(c), float(t), float(t - e), float(e),
             None, None)
            for i, v, c, t, e in zip(positions, values, confidence, total, epistemic)
        )
    uncertainty = {
        "method": config.uncertainty, "samples": len(models) * max(samples, 1), "members": len(models),
        "mode": mc_strategy(models[0], samples), "temperature": temperature,
        "map": map_name or "random", "aggregation": config.aggregation, "q": config.aggregation_q,
    }
    if class_weights is not None:
        uncertainty |= {"class_weights": [float(w) for w in class_weights], "class_pixels": [int(n) for n in pixels]}
    return ScoredPool(rows, entropy_sum / len(rows) if rows else None, uncertainty, None)


def heatmap_folder(config: CampaignConfig) -> Path:
    """Where the campaign's heatmaps go: ``heatmap_dir``, else ./activelabel-heatmaps/<name>."""
    if config.heatmap_dir:
        return Path(config.heatmap_dir).expanduser().resolve()
    from activelabel.naming import file_safe

    return (Path("activelabel-heatmaps") / file_safe(config.name)).resolve()


def prepare_tasks(engine, rnd, campaign, config: CampaignConfig, tasks: list, *, seed: int):
    """Before the tasks leave: write ``<heatmap folder>/round-NNN/<sanitised sample URI>_round-NNN.png``
    (``pipeline.heatmaps.heatmap_filenames``) for each task of this active round (its selection, and samples of earlier rounds still out) and
    give each task this round's predicted mask (PNG) and heatmap path, for Label Studio's
    pre-annotation and the image beside it. Returns ``steps.PreparedTasks``.

    The map drawn is the strategy's (entropy for random and least-confidence picks, whose
    max-softmax map is the fourth panel anyway). Rounds without a model (evaluation, cold
    start) send their tasks as they are.
    """
    from activelabel.campaign.kinds import PreparedTasks
    from activelabel.campaign.steps import _acquisition_temperature

    if rnd.kind != RoundKind.active or not tasks:
        return PreparedTasks(tasks, [])
    with session_scope(engine) as session:
        checkpoints = list(session.scalars(select(ModelCheckpoint).where(ModelCheckpoint.round_id == rnd.id)
                                           .order_by(ModelCheckpoint.member)))
        for checkpoint in checkpoints:
            session.expunge(checkpoint)
        mine = set(session.scalars(select(Selection.sample_id).where(Selection.round_id == rnd.id)))
    if not checkpoints:
        return PreparedTasks(tasks, [])
    data = campaign_data(config)
    device = resolve_device(config.device)
    models = load_members(checkpoints, device)
    model = models if len(models) > 1 else models[0]
    images, kept, _ = read_readable(data.store, [t.uri for t in tasks])
    readable = [tasks[i] for i in kept]
    map_name = SEGMENTATION_STRATEGY_MAPS[rnd.strategy]
    drawn = map_name if map_name in ("entropy", "bald", "variance") else "entropy"
    folder = heatmap_folder(config) / f"round-{rnd.index:03d}"
    names = heatmap_filenames([t.uri for t in readable], rnd.index)
    shown = _served_sizes(config, data)  # a served file's own size: its heatmap keeps its aspect
    rows, extras = [], {}
    chunks = (images[s:s + CHUNK] for s in range(0, len(images), CHUNK))
    done = 0
    for probs in predict_segmentation_stream(model, chunks, samples=_samples(config), device=device, seed=seed,
                                             temperature=_acquisition_temperature(rnd, config)):
        maps = pixel_maps(probs)
        for k in range(len(maps)):
            task = readable[done + k]
            how = (f"rank {task.rank + 1}" if task.sample_id in mine
                   else "left over from an earlier round")
            heatmap = write_heatmap(
                folder / names[done + k], images[done + k], maps.predicted[k], maps.get(drawn)[k],
                maps.max_softmax[k], labels=list(campaign.labels), map_name=drawn, q=config.aggregation_q,
                title=f"round {rnd.index}, {how}: {task.uri}",
                shown_size=_shown_size(shown, task.uri),
            )
            rows.append(dict(round_id=rnd.id, sample_id=task.sample_id, map_name=drawn, path=str(heatmap.path),
                             mean=heatmap.summary.mean, max=heatmap.summary.max,
                             top_q_mean=heatmap.summary.top_q_mean, q=heatmap.summary.q))
            extras[task.sample_id] = dict(predicted_mask=mask_to_png_bytes(maps.predicted[k]),
                                          heatmap=str(heatmap.path))
        done += len(maps)
    log.info("Round %d: %d heatmaps written to %s", rnd.index, len(rows), folder)
    return PreparedTasks([replace(t, **extras.get(t.sample_id, {})) for t in tasks], rows)


#: Shorter side, in pixels, that Label Studio shows an image at least at (enlarged by a whole factor).
MIN_DISPLAY = 256


def labelstudio_parts(config: CampaignConfig, data):
    """The image source and brush codec of a segmentation campaign's Label Studio annotator.

    By default the image is embedded (a PNG data URI) as the model sees it: decoded and resized
    to the training size, then enlarged by a whole factor to at least :data:`MIN_DISPLAY`
    pixels, so a painted mask reduces exactly to a training mask (block majority;
    ``annotation.brush``). With ``annotator.document_root`` or ``image_url_prefix`` the user's
    own files are served at their natural size instead (image source ``None``: the campaign's
    usual one, :func:`activelabel.campaign.setup.build_annotator`): annotators paint the full
    resolution, pre-annotations are encoded at each file's size and painted masks resized to
    the training size by nearest neighbour, as mask files are. The heatmap PNG is embedded
    beside the image either way; a task without one (a random pick before the first model)
    shows a grey placeholder.
    """
    import base64

    from activelabel.annotation.codecs import BrushCodec
    from activelabel.annotation.images import png_data_uri
    from activelabel.errors import ConfigError

    sample, kept, _ = read_readable(data.store, data.pool[:20])
    if not kept:
        raise ConfigError(f"campaign {config.name!r}: none of the first pool images is readable")
    height, width = (int(v) for v in sample.shape[-2:])
    scale = max(1, -(-MIN_DISPLAY // min(height, width)))
    placeholder = png_data_uri(np.full((1, 8, 8), 0.85))

    def image(uri: str) -> str:
        return png_data_uri(data.store.read([uri])[0], scale=scale)

    def heatmap(path: str | None) -> str:
        if path is None:
            return placeholder
        try:
            return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
        except OSError as error:
            log.warning("heatmap %s cannot be read (%s); the task shows a placeholder", path, error)
            return placeholder

    served = _served_sizes(config, data)
    codec = BrushCodec(data.labels, height=height, width=width, scale=1 if served else scale,
                       encode=mask_to_png_bytes, decode=lambda png: mask_from_png_bytes(png, where="a predicted mask"),
                       heatmap_value=heatmap, displayed_size=served)
    return (None if served else image), codec


def _shown_size(served: Callable[[str], tuple[int, int]] | None, uri: str) -> tuple[int, int] | None:
    """The served file's ``(height, width)``, or None (embedded images, or a file that went
    unreadable since it was read: its heatmap then keeps the map's own aspect)."""
    from activelabel.pipeline.decode import UnreadableImageError

    if served is None:
        return None
    try:
        return served(uri)
    except UnreadableImageError:
        return None


def _served_sizes(config: CampaignConfig, data) -> Callable[[str], tuple[int, int]] | None:
    """``uri -> (height, width)`` of the file Label Studio shows, when the campaign serves its
    files (document root or URL prefix); ``None`` when images are embedded."""
    from activelabel.errors import ConfigError
    from activelabel.pipeline.decode import displayed_size

    if not (config.document_root or config.image_url_prefix):
        return None
    if data.root is None:
        key = "document_root" if config.document_root else "image_url_prefix"
        raise ConfigError(
            f"annotator.{key} serves image files, but dataset {config.dataset!r} is in memory; leave it out "
            "to embed the images"
        )
    root = Path(data.root)

    @functools.lru_cache(maxsize=4096)
    def size(uri: str) -> tuple[int, int]:
        return displayed_size(root / uri, name=uri)

    return size
