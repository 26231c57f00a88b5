"""One way to turn an image file into pixels, shared by training and by the annotator's view.

The model must learn from the pixels the annotator judged (issue #13 §2), so the training
loader (:func:`read_image`) and the images sent to Label Studio (:func:`display_png`) both go
through :func:`decode_image`, which returns the image *as a web browser displays it*:

- EXIF orientation applied (a phone photo taken sideways is shown upright);
- an embedded ICC colour profile converted to sRGB (browsers colour-manage tagged images);
- transparency composited over **white** (Label Studio shows images on a white page; a black
  stroke drawn only in the alpha channel of a transparent PNG must stay visible);
- 16-bit grayscale scaled by bit depth (``v * 255 / 65535``), not clipped at 255 as
  Pillow's ``convert("L")`` does (which turns almost every 16-bit pixel white);
- 1-bit, palette, CMYK, YCbCr and CIELAB converted to their displayed 8-bit colours.

The result is mode ``"L"`` for grayscale sources (1-bit, L, LA, I;16*, I) and ``"RGB"`` for
colour ones. Modes whose display is ambiguous are refused with :class:`UnreadableImageError`
rather than guessed: 32-bit float ``"F"`` (no agreed range) and 32-bit integer ``"I"`` images
whose values leave the 16-bit range [0, 65535].

Pillow references: ``ImageOps.exif_transpose``, ``Image.alpha_composite``, ``ImageCms``, and
the mode list at https://pillow.readthedocs.io/en/stable/handbook/concepts.html#modes.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from activelabel.errors import DatasetError

_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "I;16S"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


class UnreadableImageError(DatasetError):
    """An image file that cannot be decoded or shown faithfully.

    ``path`` names the file (or sample), ``reason`` says what is wrong in one line.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # one line, whatever Pillow said
        super().__init__(f"cannot read image {self.path}: {self.reason}")

    def __reduce__(self):  # picklable across DataLoader worker processes
        return (type(self), (self.path, self.reason))


def _over_white(image):
    """Composite an image with alpha over an opaque white background (RGB or L result)."""
    from PIL import Image

    gray = image.mode in ("LA", "La")
    rgba = image.convert("RGBA")  # also un-premultiplies RGBa / La
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(background, rgba).convert("RGB")
    return flat.convert("L") if gray else flat


def _sixteen_bit(image, name: str):
    """I;16* or I (within 0..65535) -> L, scaled by bit depth: v * 255 / 65535, rounded."""
    from PIL import Image

    values = np.asarray(image)
    if image.mode == "I":
        low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
        if low < 0 or high > 65535:
            raise UnreadableImageError(
                name,
                f"32-bit integer image (mode 'I') with values {low}..{high} outside the 16-bit range "
                "0..65535; its display is ambiguous: save it as 8- or 16-bit PNG",
            )
    scaled = np.rint(values.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _to_srgb(image):
    """Apply an embedded ICC profile (RGB or CMYK) to get sRGB, as browsers do; silent no-op
    when the profile is absent or unusable."""
    profile = image.info.get("icc_profile")
    if not profile or image.mode not in ("RGB", "CMYK"):
        return image
    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image


def _displayable(image, name: str):
    """The decoded image in mode L or RGB, as a browser shows it (see the module docstring)."""
    mode = image.mode
    if mode in ("L", "RGB") and "transparency" not in image.info:
        return _to_srgb(image) if mode == "RGB" else image
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I;16") or mode == "I":
        return _sixteen_bit(image, name)
    if mode == "F":
        raise UnreadableImageError(
            name,
            "32-bit float image (mode 'F') has no agreed display range; "
            "save it as 8- or 16-bit PNG (scaled to 0..255 or 0..65535)",
        )
    if mode in _ALPHA_MODES:
        return _over_white(image)
    if mode in ("P", "L", "RGB"):  # palette, or L/RGB with a transparent colour key
        if "transparency" in image.info:
            return _over_white(image.convert("RGBA" if mode != "L" else "LA"))
        return image.convert("RGB")
    if mode == "CMYK":
        converted = _to_srgb(image)
        return converted if converted.mode == "RGB" else image.convert("RGB")
    if mode in ("YCbCr", "RGBX", "HSV", "LAB"):
        try:
            return image.convert("RGB")
        except ValueError as exc:
            raise UnreadableImageError(name, f"cannot convert mode {mode!r} to RGB: {exc}") from None
    raise UnreadableImageError(
        name, f"image mode {mode!r} cannot be shown faithfully; convert it to PNG or JPEG (RGB or grayscale)"
    )


def decode_image(source: str | Path | bytes, *, name: str | None = None):
    """The image in ``source`` (a file path or the file's bytes) exactly as a browser shows it.

    Returns a loaded ``PIL.Image.Image`` in mode ``"L"`` (grayscale sources) or ``"RGB"``
    (colour sources); see the module docstring for each conversion. ``name`` is used in error
    messages (default: the path, or ``"<bytes>"``). Animated images give their first frame.

    Raises :class:`UnreadableImageError` for a missing, empty, truncated or non-image file, a
    decompression bomb, or a mode without a faithful display (``"F"``, out-of-range ``"I"``).
    """
    return _decode(source, name=name, at_least=None)


#: EXIF orientations that turn the stored image a quarter turn: the shown width is its height.
_QUARTER_TURNS = {5, 6, 7, 8}


def displayed_size(path: str | Path, *, name: str | None = None) -> tuple[int, int]:
    """``(height, width)`` in pixels of the image file as a browser shows it (EXIF orientation
    applied, as :func:`decode_image` does), read from the header without decoding the pixels.

    Label Studio reports a painted brush mask at this size (``original_height`` x
    ``original_width``). Raises :class:`UnreadableImageError` as :func:`decode_image` does for a
    missing, empty or non-image file.
    """
    from PIL import Image, UnidentifiedImageError

    label = name if name is not None else str(path)
    try:
        with Image.open(path) as opened:
            width, height = opened.size
            turned = opened.getexif().get(0x0112) in _QUARTER_TURNS
    except FileNotFoundError:
        raise UnreadableImageError(label, "file does not exist") from None
    except UnidentifiedImageError:
        raise UnreadableImageError(label, "not an image file Pillow can identify (corrupt or another format)") from None
    except OSError as exc:
        raise UnreadableImageError(label, f"cannot read its header: {exc.strerror or exc}") from None
    return (width, height) if turned else (height, width)


def _decode(source: str | Path | bytes, *, name: str | None, at_least: int | None):
    """:func:`decode_image`; ``at_least`` lets a JPEG decode at 1/2, 1/4 or 1/8 scale (DCT
    scaling, ``Image.draft``) while both sides stay >= ``at_least`` pixels."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    label = name if name is not None else ("<bytes>" if isinstance(source, (bytes, bytearray)) else str(source))
    if isinstance(source, (bytes, bytearray)):
        stream = io.BytesIO(source)
        if not source:
            raise UnreadableImageError(label, "empty data (0 bytes)")
    else:
        path = Path(source)
        try:
            if path.stat().st_size == 0:
                raise UnreadableImageError(label, "empty file (0 bytes)")
        except FileNotFoundError:
            raise UnreadableImageError(label, "file does not exist") from None
        except OSError as exc:
            raise UnreadableImageError(label, f"cannot access file: {exc.strerror or exc}") from None
        stream = path
    try:
        with Image.open(stream) as opened:
            if at_least is not None and opened.format == "JPEG":
                opened.draft(None, (at_least, at_least))
            opened.load()
            upright = ImageOps.exif_transpose(opened)
            # exif_transpose drops nothing we need; keep the info (transparency, ICC) it copies.
            return _displayable(upright, label)
    except UnreadableImageError:
        raise
    except UnidentifiedImageError:
        reason = "not an image file Pillow can identify (corrupt or another format)"
        raise UnreadableImageError(label, reason) from None
    except Image.DecompressionBombError as exc:
        raise UnreadableImageError(label, f"too many pixels ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise UnreadableImageError(label, f"{exc or type(exc).__name__}") from None


def image_array(image, *, size: int, channels: int) -> np.ndarray:
    """``float32 [channels, size, size]`` in [0, 1] from a decoded image (mode L or RGB).

    ``channels=1`` of a colour image uses ITU-R 601-2 luma (``L = R*299/1000 + G*587/1000 +
    B*114/1000``, as Pillow's ``convert("L")``); ``channels=3`` of a grayscale image
    replicates it. Resized to a ``size`` x ``size`` square with bilinear filtering (aspect
    ratio not kept, as the models expect square inputs). Any other mode is first made
    displayable with the same rules as :func:`decode_image`.
    """
    from PIL import Image

    if channels not in (1, 3):
        raise DatasetError(f"channels must be 1 or 3, got {channels}")
    if size < 1:
        raise DatasetError(f"image size must be positive, got {size}")
    if image.mode not in ("L", "RGB"):
        image = _displayable(image, "<image>")
    target = "L" if channels == 1 else "RGB"
    if image.mode != target:
        image = image.convert(target)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    return array[None, :, :] if channels == 1 else np.ascontiguousarray(array.transpose(2, 0, 1))


def read_image(path: str | Path, *, size: int, channels: int, name: str | None = None) -> np.ndarray:
    """:func:`decode_image` then :func:`image_array`: ``float32 [channels, size, size]`` in [0, 1].

    A large JPEG is decoded at a reduced scale first (libjpeg DCT scaling to no less than
    ``size`` pixels a side, 2-8x faster on photos); the square resize that follows is the same.
    Raises :class:`UnreadableImageError` (naming ``name`` or the path) when it cannot be read.
    """
    return image_array(_decode(path, name=name, at_least=size), size=size, channels=channels)


def display_png(source: str | Path | bytes, *, name: str | None = None) -> bytes:
    """PNG bytes of :func:`decode_image` (full resolution): what Label Studio should show."""
    out = io.BytesIO()
    decode_image(source, name=name).save(out, format="PNG")
    return out.getvalue()


def array_png(array: np.ndarray, *, scale: int = 1) -> bytes:
    """PNG bytes of an in-memory image ``[C, H, W]`` (C = 1 or 3) or ``[H, W]`` in [0, 1],
    enlarged ``scale`` times by pixel repetition. Values are rounded to 8 bits."""
    from PIL import Image

    pixels = np.asarray(array, dtype=np.float64)
    if pixels.ndim == 3 and pixels.shape[0] in (1, 3):
        pixels = pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1)
    elif pixels.ndim != 2:
        raise DatasetError(
            f"cannot encode an image of shape {tuple(np.shape(array))} as PNG: expected [C, H, W], C in (1, 3)"
        )
    if scale > 1:
        pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    out = io.BytesIO()
    as_bytes = np.rint(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    Image.fromarray(np.ascontiguousarray(as_bytes)).save(out, format="PNG")
    return out.getvalue()
