"""Per-pixel temperature calibration: segmentation logits as the rows classification calibrates.

Temperature scaling (Guo, Pleiss, Sun & Weinberger 2017, "On Calibration of Modern Neural
Networks") fits one scalar ``T`` dividing the logits. A U-Net's output is a classifier per
pixel, so the functions of :mod:`activelabel.pipeline.calibration` (which take logits ``[n, C]``
or ``[T, n, C]`` and labels ``[n]``) apply unchanged once the labeled pixels are flattened to
rows: :func:`pixel_rows` does that, dropping ``ignore_index`` pixels and keeping at most
``per_image`` pixels of each image (a seeded subsample), and remembers which image every row
came from. :func:`image_folds` deals *images*, not pixels, to the cross-validation folds: the
pixels of one image are strongly correlated (neighbours share a shape, a lighting, an
annotator), so a fold check that judged a temperature on pixels of images it was fitted on
would approve it on what it has already seen.

numpy only.
"""

from __future__ import annotations

import numpy as np

from activelabel.errors import InvalidArrayError

#: Pixels kept per image (a seeded subsample when an image has more labeled ones). Why a cap:
#: the fit holds ``passes x pixels x classes`` float64 logits, and the mixture fit evaluates
#: them on a grid of 81 temperatures; 4,096 pixels (all of a 64 x 64 image) x 20 passes x 5
#: classes is 3 MB per image. Pixels of one image are correlated, so more of them add little.
PIXELS_PER_IMAGE = 4096


def pixel_rows(
    logits: np.ndarray, masks: np.ndarray, *, ignore_index: int = 255, per_image: int = PIXELS_PER_IMAGE,
    seed: int = 0, first_image: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The labeled pixels of ``logits`` ``[S, b, C, H, W]`` (S passes; ``[b, C, H, W]`` is read as
    S = 1) and ``masks`` ``[b, H, W]`` as rows: ``(logits [S, n, C] float64, labels [n] int64,
    image [n] int64)``, ``image`` the index of each row's image (``first_image`` + its position in
    the chunk, so chunks of one set can be concatenated).

    Pixels whose mask value is ``ignore_index`` are dropped. An image with more than
    ``per_image`` labeled pixels keeps ``per_image`` of them, drawn without replacement by a
    generator seeded with ``(seed, first_image + k)`` for image k: the same image keeps the same
    pixels however the set is chunked. Rows keep the image order, and within an image raster
    order. Raises :class:`~activelabel.errors.InvalidArrayError` for mismatched shapes or a mask
    value that is neither a class index nor ``ignore_index``.
    """
    z = np.asarray(logits)
    if z.ndim == 4:
        z = z[None]
    y = np.asarray(masks)
    if z.ndim != 5 or y.shape != (z.shape[1], *z.shape[3:]):
        raise InvalidArrayError(f"expected logits [S, b, C, H, W] and masks [b, H, W]; got {z.shape} and {y.shape}")
    c = z.shape[2]
    rows, labels, images = [], [], []
    for k in range(y.shape[0]):
        flat = y[k].reshape(-1).astype(np.int64)
        where = np.flatnonzero(flat != ignore_index)
        if where.size and (flat[where].min() < 0 or flat[where].max() >= c):
            raise InvalidArrayError(
                f"mask of image {first_image + k} holds values outside 0..{c - 1} that are not ignore_index "
                f"{ignore_index}")
        if where.size > per_image:
            rng = np.random.default_rng([seed, first_image + k])
            where = np.sort(rng.choice(where, size=per_image, replace=False))
        rows.append(z[:, k].reshape(z.shape[0], c, -1)[:, :, where].transpose(0, 2, 1))  # [S, n_k, C]
        labels.append(flat[where])
        images.append(np.full(where.size, first_image + k, dtype=np.int64))
    if not rows:
        return np.zeros((z.shape[0], 0, c)), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (np.concatenate(rows, axis=1).astype(np.float64), np.concatenate(labels),
            np.concatenate(images))


def image_folds(image: np.ndarray, wrong: np.ndarray, seed: int, folds: int) -> np.ndarray:
    """Fold index ``[n]`` of each pixel row (``image`` ``[n]`` its image, ``wrong`` bool ``[n]``
    predicted wrong at T = 1): every pixel of an image falls in its image's fold.

    Images are dealt round-robin in order of their wrong pixels, most first (ties in a seeded
    order), so each fold gets a share of the errors (a temperature is learned from them) and
    the folds' image counts differ by at most one. Deterministic in ``seed``. Raises
    :class:`~activelabel.errors.InvalidArrayError` with fewer than ``folds`` images (a fold
    would be empty).
    """
    image = np.asarray(image)
    ids, inverse = np.unique(image, return_inverse=True)
    if len(ids) < folds:
        raise InvalidArrayError(f"a {folds}-fold check by image needs at least {folds} images; got {len(ids)}")
    errors = np.bincount(inverse, weights=np.asarray(wrong, dtype=np.float64), minlength=len(ids))
    shuffled = np.random.default_rng([seed, 0x1A6E]).permutation(len(ids))
    order = shuffled[np.argsort(-errors[shuffled], kind="stable")]
    fold_of_image = np.empty(len(ids), dtype=np.int64)
    fold_of_image[order] = np.arange(len(ids)) % folds
    return fold_of_image[inverse]
