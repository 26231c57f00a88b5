"""Heatmap PNGs of per-pixel uncertainty, for the images a round selected.

One PNG per image, four panels side by side: the image | the predicted mask (one colour per
class, with a legend) | the uncertainty map with its colour bar (entropy, BALD or variance,
in its own units) | the max-softmax map with its colour bar (the "confidence heat map" of a
single softmax, shown for comparison: low = unsure).

Drawn with ``matplotlib.figure.Figure`` and the Agg canvas (no pyplot global state, no
display), as the report's figures are. Colour scales: the uncertainty map runs from 0 to its
map's theoretical maximum (``log C`` nats for entropy and BALD, 0.25 for variance) so that two
heatmaps of the same campaign compare at a glance; max-softmax runs from 1/C to 1.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from activelabel.acquisition.pixelwise import MapSummary, summarize_map
from activelabel.errors import InvalidArrayError

_UNITS = {"entropy": "nats", "bald": "nats", "variance": "probability²"}
_TITLES = {"entropy": "predictive entropy", "bald": "BALD (mutual information)", "variance": "MC variance"}


@dataclass(frozen=True)
class Heatmap:
    """A written heatmap PNG: its ``path``, the map drawn (``map_name``) and its summary."""

    path: Path
    map_name: str
    summary: MapSummary


#: Longest sanitised URI kept in a heatmap file name (the tail: the most specific part).
NAME_STEM_MAX = 120


def heatmap_filenames(uris: list[str], round_index: int) -> list[str]:
    """File names of the heatmaps of ``uris`` selected in round ``round_index``, one per URI, in order.

    A name is the sample's URI made safe for every file system, then the round:
    ``shapes/0/000012.png`` in round 1 -> ``shapes-0-000012_round-001.png``, so that a user who
    knows an image finds its heatmap (and a copied-out file still says its round). Runs of
    characters other than letters, digits, ``.``, ``_`` and ``-`` become one ``-``; the image's
    own extension and a ``file://`` scheme are dropped; a stem longer than
    :data:`NAME_STEM_MAX` keeps its tail. Two URIs that sanitise to the same name (``a/b.png``
    and ``a-b.png``) both get the first 8 hex digits of their URI's SHA-1 appended, so names
    within a round never collide.
    """
    stems = []
    for uri in uris:
        text = re.sub(r"^file://", "", uri)
        head, _, last = text.rpartition("/")
        last = re.sub(r"\.(png|jpe?g|bmp|gif|tiff?|webp|npy)$", "", last, flags=re.IGNORECASE)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{head}/{last}" if head else last).strip("-.") or "sample"
        stems.append(stem[-NAME_STEM_MAX:].lstrip("-.") or "sample")
    taken: dict[str, int] = {}
    for stem in stems:
        taken[stem] = taken.get(stem, 0) + 1
    names = []
    for uri, stem in zip(uris, stems):
        if taken[stem] > 1:
            stem = f"{stem}-{hashlib.sha1(uri.encode('utf-8')).hexdigest()[:8]}"
        names.append(f"{stem}_round-{round_index:03d}.png")
    return names


def _vmax(map_name: str, num_classes: int) -> float:
    return math.log(num_classes) if map_name in ("entropy", "bald") else 0.25


def _class_colours(num_classes: int) -> np.ndarray:
    from matplotlib import colormaps

    colours = np.asarray(colormaps["tab10"](np.arange(10) % 10))[:, :3]
    colours[0] = (0.0, 0.0, 0.0)  # class 0 (usually the background) in black
    return np.asarray([colours[c % 10] for c in range(num_classes)])


def write_heatmap(path: str | Path, image: np.ndarray, predicted: np.ndarray, uncertainty: np.ndarray,
                  max_softmax: np.ndarray, **options: Any) -> Heatmap:
    """Write the four-panel heatmap PNG of one image to ``path``; return it with the map's
    :class:`~activelabel.acquisition.pixelwise.MapSummary` (mean, max, top-q mean).

    The arrays and the keyword ``options`` (``labels`` required; ``map_name``, ``q``,
    ``ignore``, ``title``, ``vmax``, ``shown_size``, ``dpi``) are :func:`heatmap_figure`'s, and
    so are the errors raised; parent folders are created.
    """
    figure, summary = heatmap_figure(image, predicted, uncertainty, max_softmax, **options)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png")
    return Heatmap(path=target, map_name=options.get("map_name", "entropy"), summary=summary)


def heatmap_figure(
    image: np.ndarray,
    predicted: np.ndarray,
    uncertainty: np.ndarray,
    max_softmax: np.ndarray,
    *,
    labels: list[str],
    map_name: str = "entropy",
    q: float = 0.1,
    ignore: np.ndarray | None = None,
    title: str | None = None,
    vmax: float | None = None,
    shown_size: tuple[int, int] | None = None,
    dpi: int = 100,
) -> tuple[Any, MapSummary]:
    """The four-panel heatmap figure of one image (a ``matplotlib.figure.Figure`` on the Agg
    canvas) and the map's :class:`~activelabel.acquisition.pixelwise.MapSummary`.

    ``image`` ``[C, H, W]`` (C = 1 or 3) in [0, 1]; ``predicted`` int ``[H, W]``;
    ``uncertainty`` and ``max_softmax`` float ``[H, W]``; ``labels`` the class names;
    ``map_name`` one of ``entropy``, ``bald``, ``variance`` (sets the title, units and colour
    scale). ``vmax`` sets the top of the uncertainty colour scale (default: the map's
    theoretical maximum, ``log C`` nats or 0.25; BALD is usually far below it, so a campaign may
    fix e.g. 0.5 nats for all its BALD heatmaps). ``ignore`` (bool ``[H, W]``) pixels are left out of the summary and drawn grey.
    ``shown_size`` ``(height, width)`` in pixels: the size annotators see the image at (a served
    file's own size); each panel is drawn at that aspect ratio, so a map made at the training
    size (e.g. 32 x 32) lies over a 4:3 photo as it does in the model's view, stretched, not
    squashed to a square (trial 15 F10). None: the arrays' own aspect. Raises
    :class:`~activelabel.errors.InvalidArrayError` for mismatched shapes or a non-positive
    ``shown_size`` and ``ValueError`` for an unknown ``map_name``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if map_name not in _UNITS:
        raise ValueError(f"unknown uncertainty map {map_name!r}; choose one of: {', '.join(_UNITS)}")
    pixels = np.asarray(image, dtype=np.float64)
    if pixels.ndim != 3 or pixels.shape[0] not in (1, 3):
        raise InvalidArrayError(f"heatmap image must be [C, H, W] with C = 1 or 3; got shape {pixels.shape}")
    hw = pixels.shape[1:]
    for name, arr in (("predicted", predicted), ("uncertainty", uncertainty), ("max_softmax", max_softmax)):
        if np.shape(arr) != hw:
            raise InvalidArrayError(f"heatmap {name} map is shaped {np.shape(arr)}, the image {hw}")
    if shown_size is not None and (len(shown_size) != 2 or min(int(v) for v in shown_size) <= 0):
        raise InvalidArrayError(f"heatmap shown_size must be (height, width) in pixels, got {shown_size!r}")
    # Every panel spans the shown image's pixels: its aspect, and axes in its own pixels.
    extent = None if shown_size is None else (0, int(shown_size[1]), int(shown_size[0]), 0)
    summary = summarize_map(uncertainty, q=q, ignore=ignore)
    num_classes = len(labels)
    colours = _class_colours(num_classes)
    mask_rgb = colours[np.clip(np.asarray(predicted), 0, num_classes - 1)]
    unc = np.ma.masked_array(np.asarray(uncertainty, dtype=np.float64), mask=ignore)
    soft = np.ma.masked_array(np.asarray(max_softmax, dtype=np.float64), mask=ignore)

    figure = Figure(figsize=(13.5, 3.6), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 4)
    shown = pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1)
    axes[0].imshow(np.clip(shown, 0, 1), cmap="gray" if pixels.shape[0] == 1 else None, vmin=0, vmax=1, interpolation="nearest", extent=extent)
    axes[0].set_title("image")
    axes[1].imshow(mask_rgb, interpolation="nearest", extent=extent)
    axes[1].set_title("predicted mask")
    present = sorted(int(c) for c in np.unique(predicted))
    axes[1].legend(
        handles=[Patch(color=colours[c], label=labels[c]) for c in present if 0 <= c < num_classes],
        loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False,
    )
    cmap_unc = _with_grey("magma")
    drawn = axes[2].imshow(unc, cmap=cmap_unc, vmin=0.0, vmax=vmax if vmax is not None else _vmax(map_name, num_classes), interpolation="nearest",
                          extent=extent)
    figure.colorbar(drawn, ax=axes[2], fraction=0.046, pad=0.04, label=_UNITS[map_name])
    axes[2].set_title(f"{_TITLES[map_name]}\nmean {summary.mean:.3g}, top-{summary.q:g} {summary.top_q_mean:.3g}", fontsize=9)
    drawn = axes[3].imshow(soft, cmap=_with_grey("viridis"), vmin=1.0 / num_classes, vmax=1.0, interpolation="nearest",
                          extent=extent)
    figure.colorbar(drawn, ax=axes[3], fraction=0.046, pad=0.04, label="probability")
    axes[3].set_title("max softmax (low = unsure)", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure, summary


def _with_grey(name: str):
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad=(0.6, 0.6, 0.6))
