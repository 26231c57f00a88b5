"""Segmentation quality and calibration: mIoU, per-class IoU, pixel accuracy, pixel ECE.

Computed from running sums (a confusion matrix and per-bin confidence counts), so an
evaluation set of any size streams through chunk by chunk and chunking does not change the
result. Pixels labeled ``ignore_index`` take no part. numpy only.

- IoU of class c: ``TP_c / (TP_c + FP_c + FN_c)`` over all pixels of the set (the dataset-level
  IoU of Pascal VOC / Cityscapes, not a mean of per-image IoUs); NaN for a class that neither
  the truth nor the prediction contains. mIoU is the mean over the classes that have an IoU.
- Pixel ECE: the ECE of Guo et al. 2017 with every non-ignored pixel a sample: confidence
  ``max_c p``, correct when ``argmax_c p`` is the true class; ``bins`` equal-width bins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from activelabel.errors import InvalidArrayError


@dataclass(frozen=True)
class SegmentationEvaluation:
    """``miou`` and ``per_class_iou`` (float64 ``[C]``, NaN where undefined), ``pixel_accuracy``,
    ``pixel_ece``, and the number of pixels scored (``pixels``)."""

    miou: float
    per_class_iou: np.ndarray
    pixel_accuracy: float
    pixel_ece: float
    pixels: int


class SegmentationMeter:
    """Accumulates chunks of predictions; :meth:`result` gives the :class:`SegmentationEvaluation`."""

    def __init__(self, num_classes: int, *, ignore_index: int = 255, bins: int = 15) -> None:
        if num_classes < 2 or bins < 1:
            raise ValueError(f"need num_classes >= 2 and bins >= 1; got {num_classes}, {bins}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.bins = bins
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)  # [true, predicted]
        self.bin_count = np.zeros(bins, dtype=np.int64)
        self.bin_confidence = np.zeros(bins, dtype=np.float64)
        self.bin_correct = np.zeros(bins, dtype=np.int64)

    def update(self, probs: np.ndarray, targets: np.ndarray) -> None:
        """Add mean probabilities ``[b, C, H, W]`` and true masks ``[b, H, W]``.

        Raises :class:`~activelabel.errors.InvalidArrayError` for mismatched shapes or a target
        value that is neither a class index nor ``ignore_index``.
        """
        p = np.asarray(probs)
        y = np.asarray(targets).astype(np.int64)
        if p.ndim != 4 or p.shape[1] != self.num_classes or y.shape != (p.shape[0], *p.shape[2:]):
            raise InvalidArrayError(
                f"expected probabilities [b, {self.num_classes}, H, W] and masks [b, H, W]; got {p.shape} and {y.shape}"
            )
        valid = y != self.ignore_index
        truth = y[valid]
        if truth.size and (truth.min() < 0 or truth.max() >= self.num_classes):
            raise InvalidArrayError(
                f"masks hold values outside 0..{self.num_classes - 1} that are not ignore_index {self.ignore_index}"
            )
        pixels = np.moveaxis(p, 1, -1)[valid]  # [P, C]
        predicted = pixels.argmax(axis=1)
        self.confusion += np.bincount(
            truth * self.num_classes + predicted, minlength=self.num_classes**2
        ).reshape(self.num_classes, self.num_classes)
        confidence = pixels.max(axis=1).astype(np.float64)
        which = np.clip(np.ceil(confidence * self.bins).astype(np.int64) - 1, 0, self.bins - 1)
        self.bin_count += np.bincount(which, minlength=self.bins)
        self.bin_confidence += np.bincount(which, weights=confidence, minlength=self.bins)
        self.bin_correct += np.bincount(which, weights=(predicted == truth), minlength=self.bins).astype(np.int64)

    def result(self) -> SegmentationEvaluation:
        tp = np.diag(self.confusion).astype(np.float64)
        union = self.confusion.sum(axis=0) + self.confusion.sum(axis=1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
        total = int(self.confusion.sum())
        have = ~np.isnan(iou)
        miou = float(iou[have].mean()) if have.any() else float("nan")
        accuracy = float(tp.sum() / total) if total else float("nan")
        if total:
            filled = self.bin_count > 0
            gap = np.abs(self.bin_correct[filled] - self.bin_confidence[filled])  # n_b * |acc_b - conf_b|
            ece = float(gap.sum() / total)
        else:
            ece = float("nan")
        return SegmentationEvaluation(miou=miou, per_class_iou=iou, pixel_accuracy=accuracy, pixel_ece=ece, pixels=total)


def segmentation_metrics(
    probs: np.ndarray, targets: np.ndarray, *, ignore_index: int = 255, bins: int = 15
) -> SegmentationEvaluation:
    """:class:`SegmentationEvaluation` of mean probabilities ``[N, C, H, W]`` against masks ``[N, H, W]``."""
    meter = SegmentationMeter(np.asarray(probs).shape[1], ignore_index=ignore_index, bins=bins)
    meter.update(probs, targets)
    return meter.result()
