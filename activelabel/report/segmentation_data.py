"""What a segmentation campaign's report reads beyond the rounds: the heatmap table (each
selected sample's PNG path and its map's summary) and the painted masks of the picks.

Read from storage only. The heatmap PNGs themselves live on disk where the round wrote them
(``heatmap.path``); the report embeds the bytes of those it finds and names the ones it does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, and_, select

from activelabel.pipeline.masks import IGNORE_INDEX, mask_from_png_bytes
from activelabel.storage import Heatmap, Round, Sample, Selection, session_scope
from activelabel.storage.repository import annotation_masks


@dataclass(frozen=True)
class HeatmapRow:
    """One heatmap row with where its sample ranked: ``mean``, ``max`` and ``top_q_mean`` of the
    drawn map (``map_name``: entropy or BALD in nats, variance in probability²) over the image's
    pixels, ``q`` the top fraction averaged, ``score`` the sample's acquisition score."""

    round_index: int
    rank: int
    sample_id: int
    uri: str
    map_name: str
    path: str
    mean: float
    max: float
    top_q_mean: float
    q: float
    score: float


def heatmap_rows(engine: Engine, campaign_id: int) -> list[HeatmapRow]:
    """Every heatmap the campaign's rounds stored, by round index, then rank."""
    with session_scope(engine) as session:
        rows = session.execute(
            select(Round.index, Selection.rank, Heatmap.sample_id, Sample.uri, Heatmap.map_name, Heatmap.path,
                   Heatmap.mean, Heatmap.max, Heatmap.top_q_mean, Heatmap.q, Selection.score)
            .select_from(Heatmap)
            .join(Round, Round.id == Heatmap.round_id)
            .join(Selection, and_(Selection.round_id == Heatmap.round_id, Selection.sample_id == Heatmap.sample_id))
            .join(Sample, Sample.id == Heatmap.sample_id)
            .where(Round.campaign_id == campaign_id)
            .order_by(Round.index, Selection.rank)
        ).all()
    return [HeatmapRow(int(i), int(rank), int(sid), uri, name, path, float(mean), float(top), float(topq), float(q),
                       float(score))
            for i, rank, sid, uri, name, path, mean, top, topq, q, score in rows]


@dataclass(frozen=True)
class PixelShares:
    """Painted pixels per class of a group of images: ``pixels`` ``[C]`` (the mean over each
    image's annotators' masks, ignore pixels left out) over ``images`` images."""

    images: int
    pixels: np.ndarray

    def shares(self) -> np.ndarray:
        """``pixels`` as fractions of the group's painted pixels ``[C]`` (zeros when none)."""
        total = float(self.pixels.sum())
        return self.pixels / total if total else np.zeros_like(self.pixels)


def picked_pixel_shares(engine: Engine, campaign_id: int, num_classes: int) -> dict[int | None, PixelShares]:
    """Round index -> the painted pixels per class of the masks of the images that round
    selected; key None: the annotated images no round selected (the seed masks). Images
    selected but not annotated yet count nowhere."""
    with session_scope(engine) as session:
        masks = annotation_masks(session, campaign_id)
        picked_in = dict(session.execute(
            select(Selection.sample_id, Round.index).join(Round, Round.id == Selection.round_id)
            .where(Selection.campaign_id == campaign_id)).all())
    counts: dict[int | None, np.ndarray] = {}
    images: dict[int | None, int] = {}
    for sample_id, blobs in masks.items():
        key = picked_in.get(sample_id)
        pixels = np.zeros(num_classes, dtype=np.float64)
        for blob in blobs:
            mask = mask_from_png_bytes(blob, where=f"annotation mask of sample {sample_id}")
            painted = mask[(mask != IGNORE_INDEX) & (mask >= 0) & (mask < num_classes)]
            pixels += np.bincount(painted.ravel(), minlength=num_classes)[:num_classes]
        counts[key] = counts.get(key, np.zeros(num_classes)) + pixels / len(blobs)
        images[key] = images.get(key, 0) + 1
    return {key: PixelShares(images[key], counts[key]) for key in counts}
