"""How a sample's image reaches the annotator's browser: an *image source* turns a sample URI
into the string Label Studio puts in ``<Image value="$image"/>``.

Three kinds:

- :func:`dataset_image_source` / :func:`png_data_uri` / :func:`store_image_source` — the pixels
  themselves, embedded as a ``data:image/png;base64,...`` URI (in-memory datasets such as the
  bundled digits, or files decoded exactly as the model reads them; no file server needed);
- :func:`url_prefix_source` — ``prefix + relative path`` for images served over HTTP;
- :class:`LocalFilesSource` — files under Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT``, served
  by Label Studio itself as ``/data/local-files/?d=<path relative to the root>``. A path that
  resolves outside the root (``..``, symlinks) is refused with :class:`UnsafeImagePathError`.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import quote

import numpy as np

from activelabel.errors import ActiveLabelError, DatasetError

ImageSource = Callable[[str], str]
"""A sample URI -> the value of the task's ``image`` field."""


class UnsafeImagePathError(ActiveLabelError, ValueError):
    """An image path that resolves outside the folder it must stay in."""

    def __init__(self, path: str | Path, root: str | Path) -> None:
        self.path = str(path)
        self.root = str(root)
        super().__init__(
            f"image path {self.path!r} resolves outside the document root {self.root!r}; "
            "only files under the root can be served"
        )


def outside_document_root(path: Path, document_root: Path, *, allow_root: bool = False) -> bool:
    """Whether Label Studio cannot serve ``path`` from ``document_root`` (its
    ``LOCAL_FILES_DOCUMENT_ROOT``): ``path`` is not under the root, or is the root itself.

    Both must be resolved already (``..`` and symlinks followed), so a link leading out of the
    root counts as outside. The root itself is no file to serve, and Label Studio refuses it as
    a project's local-files storage; ``allow_root`` accepts it where a caller allows that (a
    :class:`LocalFilesSource` storage path, which defaults to the root).
    """
    return not path.is_relative_to(document_root) or (path == document_root and not allow_root)


def png_bytes(array: np.ndarray, *, scale: int = 1) -> bytes:
    """PNG bytes of an image ``[C, H, W]`` (C = 1, 3 or 4) or ``[H, W]`` with values in [0, 1].

    ``scale`` > 1 enlarges it by pixel repetition (tiny images are hard to see in a browser).
    """
    from PIL import Image

    pixels = np.asarray(array, dtype=np.float64)
    if pixels.ndim == 3 and pixels.shape[0] in (1, 3, 4):
        pixels = pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1)
    elif pixels.ndim != 2:
        raise DatasetError(
            f"cannot encode an image of shape {tuple(np.shape(array))} as PNG: "
            "expected [C, H, W] with C in (1, 3, 4), or [H, W]"
        )
    if pixels.size == 0 or not np.isfinite(pixels).all():
        raise DatasetError(f"cannot encode an image of shape {tuple(np.shape(array))}: empty or not finite")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    if scale > 1:
        pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    as_bytes = np.rint(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(as_bytes)).save(out, format="PNG")  # L, RGB or RGBA
    return out.getvalue()


def png_data_uri(array: np.ndarray, *, scale: int = 1) -> str:
    """``data:image/png;base64,...`` of an image ``[C, H, W]`` in [0, 1] (see :func:`png_bytes`)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(array, scale=scale)).decode("ascii")


def dataset_image_source(dataset, *, min_size: int = 128) -> ImageSource:
    """Embed a :class:`~activelabel.pipeline.datasets.LabeledImages` sample as a PNG data URI,
    enlarged by a whole factor so its shorter side is at least ``min_size`` pixels."""
    height, width = dataset.images.shape[-2:]
    scale = max(1, math.ceil(min_size / max(1, min(height, width))))

    def source(uri: str) -> str:
        row = int(dataset.indices_of([uri])[0])
        return png_data_uri(dataset.images[row], scale=scale)

    return source


def _enlarged_png(data: bytes, min_size: int) -> bytes:
    """PNG bytes enlarged by a whole factor (pixel repetition) so the shorter side is at least
    ``min_size``; returned unchanged when already large enough."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        scale = max(1, math.ceil(min_size / max(1, min(width, height))))
        if scale == 1:
            return data
        image.load()
        out = io.BytesIO()
        image.resize((width * scale, height * scale), Image.Resampling.NEAREST).save(out, format="PNG")
        return out.getvalue()


def store_image_source(store, *, min_size: int = 128) -> ImageSource:
    """Embed a sample of an :class:`~activelabel.pipeline.store.ImageStore` as a PNG data URI.

    The PNG is ``store.png(uri)``: for files, the output of the same decoder the model trains
    on (:func:`activelabel.pipeline.decode.decode_image`: EXIF orientation, alpha over white,
    16-bit scaling), so the annotator judges the pixels the model sees (issue #13 §2). Images
    whose shorter side is under ``min_size`` pixels are enlarged by a whole factor (pixel
    repetition), as :func:`dataset_image_source` does. Raises
    :class:`~activelabel.pipeline.decode.UnreadableImageError` for an unreadable sample.
    """

    def source(uri: str) -> str:
        data = _enlarged_png(store.png(uri), min_size)
        return "data:image/png;base64," + base64.b64encode(data).decode("ascii")

    return source


def _relative_parts(uri: str) -> PurePosixPath:
    path = PurePosixPath(uri.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise UnsafeImagePathError(uri, "<url prefix>")
    return path


def url_prefix_source(prefix: str) -> ImageSource:
    """``prefix + relative path`` (percent-encoded), e.g. ``http://host/imgs/`` + ``a/1.png``.

    An absolute path or one with ``..`` is refused: it would leave the served folder.
    """

    def source(uri: str) -> str:
        return prefix + quote(_relative_parts(uri).as_posix(), safe="/")

    return source


class LocalFilesSource:
    """Map files under Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT`` to ``/data/local-files/?d=...``.

    ``document_root`` must be the server's ``LOCAL_FILES_DOCUMENT_ROOT`` (as this machine sees
    it). A relative sample URI is taken relative to ``base_dir`` (default: the root). Paths are
    resolved (``..`` and symlinks followed) and must stay under the root.

    Label Studio serves a file only to a project that has a local-files import storage whose
    path holds it: :class:`~activelabel.annotation.labelstudio.LabelStudioAnnotator` adds one
    for ``storage_path`` (default: the root) when it creates or finds its project.
    """

    prefix = "/data/local-files/?d="

    def __init__(
        self,
        document_root: str | Path,
        *,
        base_dir: str | Path | None = None,
        storage_path: str | Path | None = None,
    ) -> None:
        self.document_root = Path(document_root).expanduser().resolve()
        self.base_dir = Path(base_dir).resolve() if base_dir is not None else self.document_root
        self.local_storage_path = str(self._inside(storage_path or self.document_root, allow_root=True))

    def __repr__(self) -> str:
        return f"LocalFilesSource(document_root={str(self.document_root)!r})"

    def _inside(self, path: str | Path, *, allow_root: bool = False) -> Path:
        raw = str(path)
        if raw.startswith("file://"):
            raw = raw[len("file://"):]
        resolved = (self.base_dir / Path(raw).expanduser()).resolve()
        if outside_document_root(resolved, self.document_root, allow_root=allow_root):
            raise UnsafeImagePathError(raw, self.document_root)
        return resolved

    def local_path(self, uri: str) -> Path:
        """The resolved file a sample URI names (refused when outside the document root)."""
        return self._inside(uri)

    def __call__(self, uri: str) -> str:
        relative = self.local_path(uri).relative_to(self.document_root).as_posix()
        return self.prefix + quote(relative, safe="/")
