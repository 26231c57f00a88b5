"""Per-pixel temperature calibration of a segmentation round (Guo et al. 2017, "On Calibration
of Modern Neural Networks"), with classification's guard.

What is fitted. One temperature ``T`` dividing every pass's per-pixel logits, for the predictor
the round's scoring reads: one deterministic pass (``uncertainty = "deterministic"``, fitted by
LBFGS, :func:`~activelabel.pipeline.calibration.fit_temperature`) or the mean of the round's
``mc_samples`` MC-dropout passes with the scoring's mask seed
(:func:`~activelabel.pipeline.calibration.fit_mixture_temperature`); for a deep ensemble
(``ensemble``, ``ensemble+mc_dropout``) the mean of all M members' passes, the members' mean
softmax, as classification calibrates its ensembles. A sampled predictor (more than one pass or
member) also considers classification's mixture temperature ``T2`` on the averaged per-pixel
distribution, ``softmax(log(mean_s softmax(z_s / T1)) / T2)``: the round keeps whichever of
none, ``T1``, ``T2`` alone and both has the lowest out-of-fold pixel NLL on the same folds by
image (:func:`~activelabel.campaign.calibrate.choose_mixture_calibration`; ties go to the
simpler). As for classification, acquisition and the heatmaps divide each pass by ``T1`` only;
``T2`` acts on the averaged distribution the stored figures describe, and the exported model
carries it.

On what. From :data:`MIN_IMAGES` labeled images on, the round holds out
:data:`VALIDATION_FRACTION` of them (at least :data:`FOLDS` images), drawn with the round's seed
(:func:`validation_images`), trains the U-Net on the rest, and fits ``T`` on the held-out
images' labeled pixels (``ignore_index`` pixels never count; at most
:data:`~activelabel.pipeline.pixel_calibration.PIXELS_PER_IMAGE` pixels per image, and at most
:data:`PIXEL_BUDGET` in all, a seeded subsample per image,
:func:`~activelabel.pipeline.pixel_calibration.pixel_rows`). Why hold out images, not
pixels: a pixel the model trained on, or a neighbour of one, says nothing about unseen images.
Why 20 images: each brings hundreds of correlated pixels, not hundreds of independent labels;
with fewer, the five folds by image would hold one image each and a temperature would be
judged on single images. The guard below is what decides whether the few images suffice.

The guard (classification's, :func:`~activelabel.campaign.calibrate.cross_validated_nll`):
the held-out pixels are split into :data:`FOLDS` folds *by image*
(:func:`~activelabel.pipeline.pixel_calibration.image_folds`: all pixels of an image in one
fold), each fold is scored under the temperature fitted on the other folds, and ``T`` fitted on
all held-out pixels is kept only if this pooled out-of-fold pixel NLL is lower than the NLL at
``T = 1``. It also needs wrong pixels in at least :data:`FOLDS` held-out images (a temperature is
learned from errors; a fold without any would approve any sharpening). Otherwise ``T = 1`` and
``"skipped"`` says why.

What is stored (``round.calibration``, the keys classification stores): ``temperature``,
``mixture_temperature`` (1.0 when not kept), ``mixture_check`` (the choice, for a sampled
predictor), ``predictor``, ``validation_size`` (held-out *images*),
``validation_pixels`` and ``validation_errors`` (their pixels fitted on, and how many were
predicted wrong at T = 1), ``check`` (when the guard ran), ``skipped`` (when T = 1 was kept), and
``before`` / ``after``: accuracy, NLL, Brier, ECE (15 bins) and the reliability bins of the
predictor's *pixels* on the round's yardstick at ``T = 1`` and at the kept ``T``, on at most
:data:`YARDSTICK_PIXELS_PER_IMAGE` seeded pixels per yardstick image (and :data:`PIXEL_BUDGET` in
all). ``round.test_ece`` stays
the uncalibrated pixel ECE of one deterministic pass over every yardstick pixel, as
classification's ``test_ece`` is its uncalibrated ECE.
"""

from __future__ import annotations

import numpy as np
import torch

from activelabel.campaign.calibrate import CANDIDATES, choose_mixture_calibration, cross_validated_nll
from activelabel.campaign.calibration_terms import (
    BINS,
    FOLDS,
    MIN_VALIDATION,
    SEGMENTATION_MIN_IMAGES,
    VALIDATION_FRACTION,
    predictor,
)
from activelabel.pipeline.calibration import (
    calibrated_probabilities,
    calibration_report,
    fit_mixture_sharpness,
    fit_mixture_temperature,
    fit_temperature,
    predictive_probabilities,
)
from activelabel.pipeline.pixel_calibration import PIXELS_PER_IMAGE, image_folds, pixel_rows
from activelabel.pipeline.prediction import predict_stream

#: Labeled images before a segmentation round holds some out to fit a temperature (kept in the
#: torch-free ``calibration_terms`` so that ``status`` can name it).
MIN_IMAGES = SEGMENTATION_MIN_IMAGES
#: Pixels per yardstick image the before/after figures are measured on (a seeded subsample).
YARDSTICK_PIXELS_PER_IMAGE = 1024
#: Most pixel rows one fit (or one before/after measurement) holds: with more images, each gives
#: ``PIXEL_BUDGET // images`` pixels (at least :data:`MIN_PIXELS_PER_IMAGE`). Why: the rows are
#: ``passes x pixels x classes`` float64 logits (65,536 pixels x 20 passes x 21 classes is
#: 220 MB) and the mixture fit evaluates them on a grid of temperatures.
PIXEL_BUDGET = 65_536
MIN_PIXELS_PER_IMAGE = 64
#: Images per chunk through the network.
CHUNK = 32


def validation_images(labeled: int, seed: int) -> np.ndarray:
    """Positions (ascending) of the held-out images among ``labeled`` labeled ones: none below
    :data:`MIN_IMAGES`, else ``max(FOLDS, round(VALIDATION_FRACTION * labeled))`` drawn with
    ``seed`` (every fold of the guard needs an image)."""
    if labeled < MIN_IMAGES:
        return np.zeros(0, dtype=np.int64)
    size = max(FOLDS, MIN_VALIDATION, int(round(VALIDATION_FRACTION * labeled)))
    rng = np.random.default_rng([seed, 0x5E6CA1])
    return np.sort(rng.permutation(labeled)[:size]).astype(np.int64)


def segmentation_pixel_logits(
    model: torch.nn.Module | list[torch.nn.Module], images: np.ndarray, masks: np.ndarray, device: torch.device, *,
    samples: int, seed: int, ignore_index: int, per_image: int = PIXELS_PER_IMAGE,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(logits [S, n, C], labels [n], image [n])`` of the labeled pixels of ``images``
    ``[N, C, H, W]`` / ``masks`` ``[N, H, W]`` (``pipeline.pixel_calibration.pixel_rows``), S =
    ``M * max(samples, 1)`` passes (M ensemble members when ``model`` is a list, member-major)
    with dropout masks seeded ``seed`` (those of the round's scoring),
    chunk by chunk: memory is one chunk's ``[S, b, C, H, W]`` plus the kept rows. Each image keeps
    at most ``per_image`` labeled pixels, fewer when the images together would pass
    :data:`PIXEL_BUDGET` (a seeded subsample per image; ``pixel_rows``)."""
    per_image = min(per_image, max(MIN_PIXELS_PER_IMAGE, PIXEL_BUDGET // max(len(images), 1)))
    chunks = (images[s:s + CHUNK] for s in range(0, len(images), CHUNK))
    parts = [pixel_rows(z, masks[s:s + z.shape[1]], ignore_index=ignore_index, per_image=per_image, seed=seed,
                        first_image=s)
             for s, z in zip(range(0, len(images), CHUNK),
                             predict_stream(model, chunks, samples=samples, device=device, seed=seed, logits=True))]
    if not parts:
        members = list(model) if isinstance(model, (list, tuple)) else [model]
        c = members[0].spec.num_classes
        return np.zeros((len(members) * max(samples, 1), 0, c)), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (np.concatenate([p[0] for p in parts], axis=1), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))


def fit_segmentation_calibration(
    model: torch.nn.Module | list[torch.nn.Module],
    x_val: np.ndarray,
    y_val: np.ndarray,
    x_yard: np.ndarray | None,
    y_yard: np.ndarray | None,
    device: torch.device,
    *,
    samples: int = 0,
    seed: int = 0,
    method: str = "mc_dropout",
    ignore_index: int = 255,
) -> dict:
    """Fit the per-pixel temperature on the held-out images ``x_val`` ``[n, C, H, W]`` / masks
    ``y_val`` ``[n, H, W]`` and report the yardstick ``x_yard`` / ``y_yard`` (None: no
    yardstick) before and after: the JSON-ready dict of the module docstring.

    ``samples = 0``: one deterministic pass, ``T`` by LBFGS; ``samples > 0``: that many MC-dropout
    passes with masks seeded ``seed``, ``T`` fitted on the NLL of their mean
    (``fit_mixture_temperature``). ``method`` is stored in ``"predictor"``. Raises what
    ``pipeline.pixel_calibration.pixel_rows`` raises for a mask value that is neither a class
    nor ``ignore_index``.

    ``model`` may be a list of M ensemble members (``uncertainty = "ensemble"``, or
    ``"ensemble+mc_dropout"`` with ``samples`` passes each): the pixel logits are then
    ``[M * max(samples, 1), n, C]`` and ``T`` is fitted on the NLL of the mean of all those
    softmaxes, the members' mean, as classification fits its ensembles
    (``campaign.calibrate.fit_round_calibration``); ``"predictor"`` stores ``members`` M.
    """
    members = len(model) if isinstance(model, (list, tuple)) else 1
    z, labels, image = segmentation_pixel_logits(model, x_val, y_val, device, samples=samples, seed=seed,
                                                 ignore_index=ignore_index)
    fit = fit_mixture_temperature if samples > 0 else fit_temperature
    wrong = predictive_probabilities(z).argmax(-1) != labels if len(labels) else np.zeros(0, bool)
    errors = int(wrong.sum())
    images_wrong = len(np.unique(image[wrong]))
    result: dict = {"predictor": predictor(method, samples, members), "validation_size": int(len(x_val)),
                    "validation_pixels": int(len(labels)), "validation_errors": errors,
                    "before": None, "after": None}
    temperature, mixture_temperature = 1.0, 1.0
    if images_wrong < FOLDS:
        result["skipped"] = (f"only {images_wrong} of the {len(x_val)} held-out images have a pixel predicted "
                             f"wrong ({errors} of {len(labels)} pixels; the round needs {FOLDS}, one per "
                             "cross-validation fold by image), and a temperature fitted to so few errors is "
                             "fitted to them alone; T = 1 kept")
    else:
        folds = image_folds(image, wrong, seed, FOLDS)
        check = cross_validated_nll(z, labels, wrong, seed=seed, fit=fit, fold=folds)
        result["check"] = check
        chosen = "temperature" if check["out_of_fold_nll"] < check["nll_at_1"] else "none"
        if z.shape[0] > 1:  # a sampled predictor: T2 too, judged on the same folds by image
            mixture = choose_mixture_calibration(z, labels, wrong, check, seed=seed, fit=fit, fold=folds)
            result["mixture_check"] = mixture
            chosen = mixture["chosen"]
        fits_t1, fits_t2 = next((t1, t2) for name, t1, t2 in CANDIDATES if name == chosen)
        if fits_t1:
            temperature = float(fit(z, labels))
        if fits_t2:
            mixture_temperature = float(fit_mixture_sharpness(z, labels, temperature))
        if chosen == "none":
            nll = result.get("mixture_check", {}).get("out_of_fold_nll")
            nor_mixture = ("" if nll is None else f", nor did a mixture temperature (out-of-fold pixel NLL "
                           f"{nll['mixture_temperature']:.4f} alone, {nll['both']:.4f} on top of the per-pass one)")
            result["skipped"] = (f"temperatures fitted on {FOLDS - 1} of {FOLDS} folds of the {len(x_val)} held-out "
                                 f"images ({errors} of {len(labels)} pixels wrong) predicted the left-out images' "
                                 f"pixels no better than T = 1 (out-of-fold pixel NLL {check['nll_at_1']:.4f} -> "
                                 f"{check['out_of_fold_nll']:.4f}){nor_mixture}; T = 1 kept")
    result["temperature"] = temperature
    result["mixture_temperature"] = mixture_temperature
    if x_yard is not None and len(x_yard):
        yard, yard_labels, _ = segmentation_pixel_logits(model, x_yard, y_yard, device, samples=samples, seed=seed,
                                                         ignore_index=ignore_index,
                                                         per_image=YARDSTICK_PIXELS_PER_IMAGE)
        if len(yard_labels):
            for key, (t1, t2) in (("before", (1.0, 1.0)), ("after", (temperature, mixture_temperature))):
                report = calibration_report(calibrated_probabilities(yard, t1, t2), yard_labels, bins=BINS)
                result[key] = report.to_dict()
    return result
