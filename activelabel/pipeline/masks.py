"""Segmentation data: images with a label mask each, read from a user's folders of PNG masks.

A mask holds one class index per pixel. Two encodings are read:

* **index masks**: a grayscale (``L``, 16-bit ``I;16``) or palette (``P``) PNG whose pixel value
  is the class index. For a palette PNG that is the palette *index* (as Pascal VOC ships its
  masks), not the colour shown;
* **colour masks**: an RGB(A) PNG whose colours are mapped to class indices by a user-given
  ``palette`` ``{(r, g, b): index}`` (e.g. CamVid, Cityscapes colour masks).

``ignore_index`` (default 255) marks pixels that take no part in training, metrics or scores
(void, object borders). Every error names the file and what to do.

The mask of ``images/a/b.jpg`` is ``masks/a/b.png``: the same relative path, suffix ``.png``.
An image without a mask is unlabeled (a pool image), unless ``require_masks`` is set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from activelabel.errors import DatasetError
from activelabel.pipeline.decode import decode_image, image_array
from activelabel.pipeline.sources import list_images

#: Default value of "no label here" in a mask (Pascal VOC's border/void value).
IGNORE_INDEX = 255


class MaskError(DatasetError):
    """A label mask that cannot be used; ``path`` names the file, ``reason`` says why."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"label mask {self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class SegmentationImages:
    """Images ``[N, channels, H, W]`` float32 in [0, 1] and masks ``[N, H, W]`` int64.

    ``masks[i]`` holds class indices in ``[0, len(labels))`` or ``ignore_index``; an image
    without a mask (unlabeled) has ``has_mask[i] == False`` and a mask of ``ignore_index``.
    ``labels`` are the class names, index 0 first (usually the background).
    """

    name: str
    images: np.ndarray
    masks: np.ndarray
    labels: list[str]
    uris: list[str]
    ignore_index: int = IGNORE_INDEX
    has_mask: np.ndarray | None = None
    root: Path | None = None
    problems: list[str] = field(default_factory=list, compare=False)

    def __post_init__(self) -> None:
        n = len(self.images)
        if len(self.masks) != n or len(self.uris) != n:
            raise DatasetError(
                f"segmentation dataset {self.name!r}: {n} images, {len(self.masks)} masks and "
                f"{len(self.uris)} uris do not match"
            )
        if n and self.masks.shape[1:] != self.images.shape[2:]:
            raise DatasetError(
                f"segmentation dataset {self.name!r}: masks {self.masks.shape[1:]} and images "
                f"{self.images.shape[2:]} differ in size"
            )
        if self.has_mask is None:
            object.__setattr__(self, "has_mask", np.ones(n, dtype=bool))

    def __len__(self) -> int:
        return len(self.uris)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def content_hash(self, i: int) -> str:
        return hashlib.sha256(np.ascontiguousarray(self.images[i]).tobytes()).hexdigest()


def _resize_nearest(mask: np.ndarray, size: int, width: int | None = None) -> np.ndarray:
    """Nearest-neighbour resize of an index mask to ``size x size`` (or ``size x width``): each
    output pixel takes the input pixel under its centre, so two class indices never blend."""
    h, w = mask.shape
    out_h, out_w = size, size if width is None else width
    if (h, w) == (out_h, out_w):
        return mask
    rows = np.minimum((np.arange(out_h) + 0.5) * h / out_h, h - 1).astype(np.int64)
    cols = np.minimum((np.arange(out_w) + 0.5) * w / out_w, w - 1).astype(np.int64)
    return mask[rows[:, None], cols[None, :]]


def resize_mask(mask: np.ndarray, size: int, width: int | None = None) -> np.ndarray:
    """An index mask ``[H, W]`` resized to ``size x size`` (or ``size x width``: height first) by
    nearest neighbour (no blends): how mask files and masks painted on a served image of another
    size become training masks."""
    return _resize_nearest(np.asarray(mask), size, width)


def read_mask(
    path: str | Path,
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    palette: Mapping[tuple[int, int, int], int] | None = None,
    name: str | None = None,
) -> np.ndarray:
    """One mask file as int64 ``[H, W]`` class indices (full resolution).

    Index masks (modes ``L``, ``P``, ``I;16``, ``I``) give their pixel values; with ``palette``
    the file is read as RGB and each colour mapped to its index. Raises :class:`MaskError`
    naming the file for an unreadable file, a colour mask without a palette, a colour missing
    from the palette, or a value that is neither a class index below ``num_classes`` nor
    ``ignore_index``.
    """
    from PIL import Image, UnidentifiedImageError

    label = name or str(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if palette is not None:
                rgb = np.asarray(image.convert("RGB"), dtype=np.int64)
                return _map_colours(rgb, palette, label, ignore_index, num_classes)
            if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
                raise MaskError(
                    label,
                    f"is a colour image (mode {mode}); save masks as one class index per pixel "
                    "(grayscale or palette PNG), or give a palette mapping each colour to its class index",
                )
            if mode in ("LA", "La", "PA"):
                image = image.getchannel(0)
            values = np.asarray(image).astype(np.int64)
    except FileNotFoundError:
        raise MaskError(label, "file does not exist") from None
    except UnidentifiedImageError:
        raise MaskError(label, "not an image file Pillow can identify (corrupt or another format)") from None
    except MaskError:
        raise
    except (OSError, ValueError) as exc:
        raise MaskError(label, f"cannot be read: {exc}") from None
    if values.ndim != 2:
        raise MaskError(label, f"has shape {values.shape}; a mask needs one value per pixel")
    bad = (values >= num_classes) & (values != ignore_index) | (values < 0)
    if bad.any():
        found = sorted(int(v) for v in np.unique(values[bad]))[:5]
        raise MaskError(
            label,
            f"{int(bad.sum())} pixels hold values {found} that are not class indices 0..{num_classes - 1} "
            f"nor the ignore_index {ignore_index}; fix the mask or the class list",
        )
    return values


def _map_colours(
    rgb: np.ndarray, palette: Mapping[tuple[int, int, int], int], label: str, ignore_index: int, num_classes: int
) -> np.ndarray:
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    out = np.full(codes.shape, -1, dtype=np.int64)
    for colour, index in palette.items():
        if not (0 <= int(index) < num_classes or int(index) == ignore_index):
            raise MaskError(label, f"palette maps colour {tuple(colour)} to {index}, not a class index")
        r, g, b = (int(c) for c in colour)
        out[codes == ((r << 16) | (g << 8) | b)] = int(index)
    missing = out < 0
    if missing.any():
        y, x = (int(v) for v in np.argwhere(missing)[0])
        colours = sorted({tuple(int(c) for c in rgb[y, x]) for y, x in np.argwhere(missing)[:1000]})[:5]
        raise MaskError(
            label,
            f"{int(missing.sum())} pixels have colours not in the palette, e.g. {colours} "
            f"(first at x={x}, y={y}); add them to the palette",
        )
    return out


def mask_path_for(image_uri: str, masks_folder: str | Path) -> Path:
    """The mask file of an image: same relative path under ``masks_folder``, suffix ``.png``."""
    return Path(masks_folder) / Path(image_uri).with_suffix(".png")


def read_segmentation_folder(
    images_folder: str | Path,
    masks_folder: str | Path,
    *,
    labels: Sequence[str],
    size: int,
    channels: int = 3,
    ignore_index: int = IGNORE_INDEX,
    palette: Mapping[tuple[int, int, int], int] | None = None,
    require_masks: bool = False,
    name: str = "segmentation",
) -> SegmentationImages:
    """Every image under ``images_folder`` with its mask from ``masks_folder``.

    Images are decoded as a browser shows them and resized to ``size x size``
    (:func:`~activelabel.pipeline.decode.image_array`); masks are resized with nearest
    neighbour, so no pixel gets a blend of two classes. ``labels`` names the classes (index
    0 first). Images without a mask are kept as unlabeled (``has_mask`` False) unless
    ``require_masks``. Raises :class:`MaskError` naming the file for a bad mask, a missing
    mask with ``require_masks``, or a mask whose size differs from its image's; raises
    :class:`~activelabel.pipeline.decode.UnreadableImageError` for an unreadable image.
    """
    if len(labels) < 2:
        raise DatasetError(f"segmentation needs at least 2 classes (e.g. background and one object); got {list(labels)}")
    if 0 <= ignore_index < len(labels):
        raise DatasetError(f"ignore_index {ignore_index} is also a class index (0..{len(labels) - 1}); use e.g. 255")
    records = list_images(images_folder, key="images")
    root = Path(images_folder).resolve()
    images = np.zeros((len(records), channels, size, size), dtype=np.float32)
    masks = np.full((len(records), size, size), ignore_index, dtype=np.int64)
    has = np.zeros(len(records), dtype=bool)
    for i, record in enumerate(records):
        picture = decode_image(record.path, name=str(record.path))
        images[i] = image_array(picture, size=size, channels=channels)
        mask_file = mask_path_for(record.uri, masks_folder)
        if not mask_file.exists():
            if require_masks:
                raise MaskError(mask_file, f"is missing (the mask of image {record.path}); add it or drop the image")
            continue
        mask = read_mask(mask_file, num_classes=len(labels), ignore_index=ignore_index, palette=palette)
        if mask.shape != (picture.height, picture.width):
            raise MaskError(
                mask_file,
                f"is {mask.shape[1]}x{mask.shape[0]} pixels but its image {record.path} is "
                f"{picture.width}x{picture.height}; a mask must match its image",
            )
        masks[i] = _resize_nearest(mask, size)
        has[i] = True
    return SegmentationImages(
        name=name,
        images=images,
        masks=masks,
        labels=list(labels),
        uris=[r.uri for r in records],
        ignore_index=ignore_index,
        has_mask=has,
        root=root,
    )


def write_mask_png(mask: np.ndarray, path: str | Path) -> Path:
    """Save an index mask ``[H, W]`` (values 0..255) as an 8-bit grayscale PNG; returns the path."""
    from PIL import Image

    values = np.asarray(mask)
    if values.ndim != 2 or values.min(initial=0) < 0 or values.max(initial=0) > 255:
        raise DatasetError(f"cannot write mask {path}: need [H, W] values in 0..255, got shape {values.shape}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(values.astype(np.uint8))).save(target, format="PNG")
    return target


def mask_to_png_bytes(mask: np.ndarray) -> bytes:
    """An index mask ``[H, W]`` (values 0..255, 255 usually ``ignore_index``) as 8-bit grayscale
    PNG bytes: how a mask label is stored in the database (``annotation.mask``). Raises
    ``DatasetError`` for another shape or values outside 0..255."""
    import io

    from PIL import Image

    values = np.asarray(mask)
    if values.ndim != 2 or values.min(initial=0) < 0 or values.max(initial=0) > 255:
        raise DatasetError(f"cannot encode a mask: need [H, W] values in 0..255, got shape {values.shape}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(values.astype(np.uint8))).save(buffer, format="PNG")
    return buffer.getvalue()


def mask_from_png_bytes(data: bytes, *, where: str = "a stored mask") -> np.ndarray:
    """The int64 ``[H, W]`` mask of :func:`mask_to_png_bytes`'s bytes. Raises ``MaskError``
    naming ``where`` when the bytes are not a one-channel PNG."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode not in ("L", "P"):
                raise MaskError(where, f"mask PNG has mode {image.mode}, expected one class index per pixel (L)")
            return np.asarray(image, dtype=np.int64)
    except (UnidentifiedImageError, OSError) as error:
        raise MaskError(where, f"not a readable PNG mask ({error})") from None
