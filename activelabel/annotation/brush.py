"""Label Studio's brush masks <-> class-index masks: the segmentation result codec.

Label Studio stores a painted region as one ``brushlabels`` result per label: a run-length
encoded RGBA bitmap of the image's natural size (``original_width`` x ``original_height``)
whose alpha channel is the painted area. The encoding is label-studio-sdk's
(``label_studio_sdk.converter.brush.mask2rle`` / ``decode_rle``); nothing here encodes RLE by
hand.

Conventions:

- Class 0 (``labels[0]``, usually the background) is what nobody painted: the config offers
  brushes for ``labels[1:]`` only, and an unpainted pixel decodes to 0.
- The image shown to the annotator may be an enlargement of the training image by a whole
  factor ``scale`` (an embedded image: small images are enlarged so they can be painted).
  Pre-annotations are encoded at that size, and a painted mask is reduced back to the training
  size by majority of each ``scale x scale`` block (ties -> the lower class index).
- Or it is the user's own image file, served at its natural size (a document root or URL
  prefix), which need not be a whole multiple of the training size, nor square. Then
  pre-annotations are enlarged to that ``size`` by nearest neighbour, and a painted mask is
  kept at the size it was painted (stored and exported so); training resizes it to the
  training size by nearest neighbour, as it does the campaign's own mask files
  (:func:`activelabel.pipeline.masks.resize_mask`), so an accepted pre-annotation trains as
  the predicted mask it was.
- Where one annotation paints a pixel with two labels, the later result wins (the layer drawn
  last is the one on top).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from activelabel.errors import ActiveLabelError

BRUSH_FROM_NAME = "mask"
IMAGE_NAME = "image"
HEATMAP_NAME = "heatmap"
#: Distinct brush colours for labels[1:], in order.
_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c", "#fabebe", "#008080")


class BrushResultError(ActiveLabelError, ValueError):
    """A brush result that cannot become a mask: an unknown label, a broken RLE, a wrong size."""


def build_brush_config(labels: Sequence[str], *, heatmap: bool = True) -> str:
    """A ``BrushLabels`` labeling config: brushes for ``labels[1:]`` (``labels[0]`` is what is
    left unpainted), and with ``heatmap`` the task's ``$heatmap`` image (the model's
    uncertainty map) shown beside the image to paint. Values are XML-escaped."""
    if len(labels) < 2:
        raise ValueError(f"a brush config needs at least 2 classes (unpainted + one to paint); got {list(labels)}")
    brushes = "\n    ".join(
        f"<Label value={quoteattr(label)} background={quoteattr(_COLOURS[i % len(_COLOURS)])}/>"
        for i, label in enumerate(labels[1:])
    )
    side = (
        '  <View style="flex: 1; min-width: 240px">\n'
        '    <Header value="Model uncertainty (bright = unsure): paint where it is bright"/>\n'
        f'    <Image name="{HEATMAP_NAME}" value="$heatmap" zoom="true"/>\n'
        "  </View>\n"
        if heatmap
        else ""
    )
    return (
        '<View>\n'
        f'  <Header value={quoteattr(f"Paint every object; unpainted pixels are {labels[0]}")}/>\n'
        f'  <BrushLabels name="{BRUSH_FROM_NAME}" toName="{IMAGE_NAME}">\n'
        f"    {brushes}\n"
        "  </BrushLabels>\n"
        '  <View style="display: flex; gap: 12px">\n'
        '  <View style="flex: 1; min-width: 240px">\n'
        f'    <Image name="{IMAGE_NAME}" value="$image" zoom="true" zoomControl="true"/>\n'
        "  </View>\n"
        f"{side}"
        "  </View>\n"
        "</View>"
    )


def _enlarge(mask: np.ndarray, scale: int) -> np.ndarray:
    return mask if scale == 1 else mask.repeat(scale, axis=0).repeat(scale, axis=1)


def mask_to_results(
    mask: np.ndarray,
    labels: Sequence[str],
    *,
    scale: int = 1,
    size: tuple[int, int] | None = None,
    ignore_index: int | None = 255,
    from_name: str = BRUSH_FROM_NAME,
    to_name: str = IMAGE_NAME,
) -> list[dict]:
    """Brush results (one per painted class present) for a class-index mask ``[H, W]``.

    Suitable as a prediction's (pre-annotation's) or an annotation's ``result``. Class 0 and
    ``ignore_index`` pixels are left unpainted. ``scale`` enlarges the mask to the size of the
    image shown (``original_width = W * scale``); ``size`` (``(height, width)`` of a served
    image, in pixels) instead resizes it to that size by nearest neighbour. RLE by
    ``label_studio_sdk``'s ``mask2rle``. Raises :class:`BrushResultError` for a value that is
    not a class index nor ``ignore_index``.
    """
    from label_studio_sdk.converter.brush import mask2rle

    values = np.asarray(mask)
    if values.ndim != 2:
        raise BrushResultError(f"a mask must be [H, W]; got shape {values.shape}")
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    known = (values >= 0) & (values < len(labels))
    if ignore_index is not None:
        known |= values == ignore_index
    if not known.all():
        bad = sorted(int(v) for v in np.unique(values[~known]))[:5]
        raise BrushResultError(f"mask values {bad} are not class indices 0..{len(labels) - 1} nor ignore_index {ignore_index}")
    if size is not None:
        from activelabel.pipeline.masks import resize_mask

        big = resize_mask(values, int(size[0]), int(size[1]))
    else:
        big = _enlarge(values, scale)
    height, width = big.shape
    results = []
    for c in range(1, len(labels)):
        painted = big == c
        if not painted.any():
            continue
        results.append({
            "id": f"c{c}",
            "from_name": from_name,
            "to_name": to_name,
            "type": "brushlabels",
            "original_width": int(width),
            "original_height": int(height),
            "image_rotation": 0,
            "value": {"format": "rle", "rle": mask2rle((painted * 255).astype(np.uint8)), "brushlabels": [labels[c]]},
        })
    return results


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def results_to_mask(
    results: Sequence[Any],
    labels: Sequence[str],
    *,
    height: int,
    width: int,
    from_name: str = BRUSH_FROM_NAME,
    where: str = "annotation",
    keep_size: bool = False,
) -> np.ndarray:
    """Class-index mask int64 ``[height, width]`` from an annotation's brush ``results``.

    Unpainted pixels are 0; a result painted at ``k`` times the size is reduced by block
    majority (see the module docstring). With ``keep_size`` (a served image, shown at its natural
    size) the mask is returned at the size it was painted, ``[original_height, original_width]``
    (``height x width`` only when nothing was painted): the annotators' full-resolution work is
    kept, and training resizes it. Results of other controls (other ``from_name``) are skipped.
    Decoding by ``label_studio_sdk``'s ``decode_rle``. Raises :class:`BrushResultError` naming
    ``where`` for a label that is not in ``labels[1:]``, an RLE of the wrong length, results
    painted at different sizes, or (without ``keep_size``: the image shown was the training
    image enlarged) a size that is not a whole multiple of ``height x width``.
    """
    from label_studio_sdk.converter.brush import decode_rle

    index = {label: c for c, label in enumerate(labels) if c > 0}
    painted_at: tuple[int, int] | None = None
    big: np.ndarray | None = None
    for result in results:
        if _get(result, "from_name") != from_name or str(_get(result, "type", "")).lower() != "brushlabels":
            continue
        value = _get(result, "value") or {}
        names = _get(value, "brushlabels") or []
        if len(names) != 1 or names[0] not in index:
            raise BrushResultError(
                f"{where}: brush label {names!r} is not one of {list(index)}; fix the labeling config or the annotation"
            )
        h, w = int(_get(result, "original_height")), int(_get(result, "original_width"))
        if painted_at is None:
            painted_at = (h, w)
            big = np.zeros((h, w), dtype=np.int64)
        elif painted_at != (h, w):
            raise BrushResultError(f"{where}: brush results painted at different sizes {painted_at} and {(h, w)}")
        rle = _get(value, "rle")
        try:
            pixels = np.asarray(decode_rle(rle), dtype=np.uint8)
        except Exception as exc:  # noqa: BLE001 - a malformed RLE fails anywhere in the decoder
            raise BrushResultError(f"{where}: brush RLE of {names[0]!r} cannot be decoded ({type(exc).__name__}: {exc})") from None
        if pixels.size != h * w * 4:
            raise BrushResultError(
                f"{where}: brush RLE of {names[0]!r} holds {pixels.size} values, expected {h}x{w}x4 = {h * w * 4}"
            )
        alpha = pixels.reshape(h, w, 4)[:, :, 3]
        assert big is not None
        big[alpha >= 128] = index[names[0]]
    if big is None:
        return np.zeros((height, width), dtype=np.int64)
    if keep_size:
        return big
    h, w = big.shape
    if h % height or w % width or h // height != w // width:
        raise BrushResultError(
            f"{where}: brush painted at {w}x{h} pixels, not a whole multiple of the {width}x{height} image"
        )
    return _reduce(big, h // height, len(labels))


def _reduce(big: np.ndarray, k: int, num_classes: int) -> np.ndarray:
    """Block majority over ``k x k`` blocks (ties -> lower class index)."""
    if k == 1:
        return big
    h, w = big.shape[0] // k, big.shape[1] // k
    blocks = big.reshape(h, k, w, k).transpose(0, 2, 1, 3).reshape(h, w, k * k)
    counts = (blocks[..., None] == np.arange(num_classes)).sum(axis=2)
    return counts.argmax(axis=-1).astype(np.int64)
