"""Export what a campaign produced: the labels (CSV or JSON Lines) and the latest model.

One row per labeled sample: its file path, the resolved label, how many annotations it got,
their agreement, the round that chose it (empty for labels handed over with the data) and its
split. Byte-identical copies of a labeled image get a row each, with ``copy_of`` naming the
file of the sample that was labeled, written as ``path`` is (absolute for files): one answer
labels all copies, and the copies are not counted as labeled samples.

A segmentation campaign's label is a mask: the export writes each resolved mask (the one
mask, or several annotators' per-pixel majority) as a PNG file under ``masks/`` beside the
manifest, named by the sample's URI (``a/b.jpg`` -> ``masks/a/b.png``; a ``..`` part of a URI
outside the data folder becomes ``_parent_``), and the manifest's ``mask`` column holds that
path relative to the manifest. The PNG is a palette image whose pixel *index* is the class
(0 = ``labels[0]``, 255 = ignored: ties between annotators, unpainted or void pixels), as
Pascal VOC ships masks: ``numpy.asarray(PIL.Image.open(f))`` gives the class indices, and an
image viewer shows the classes in colour. ``agreement`` is the annotators' mean pairwise IoU.

A segmentation campaign whose annotations were repainted or deleted in Label Studio after a
sync also gets their history: each replaced (or deleted) mask as a palette PNG under
``mask-history/``, in a folder named like the sample's current mask
(``masks/a/b.png`` -> ``mask-history/a/b/change-<id>-annotation-<annotation id>-<edited or
deleted>.png``; ``<id>`` is the ``annotation_change`` row's id, so files sort oldest first), and
a manifest ``mask-history.csv`` (or ``.jsonl``, as the labels file) beside the labels file, one
row per change: which image, which annotation of which annotator, what happened and when, and
the old mask's file (empty when none was kept: an answer that was rejected, or a change recorded
before migration 0008 stored masks).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import campaign_data
from activelabel.errors import CampaignStateError, ConfigError
from activelabel.storage import ModelCheckpoint, Round, Sample, Selection, session_scope
from activelabel.storage.models import AnnotationChange
from activelabel.storage.repository import require_campaign, resolved_labels

#: Beside the labels file: the folder of replaced masks and its manifest's name (suffix as the labels file).
HISTORY_FOLDER, HISTORY_NAME = "mask-history", "mask-history"

FORMATS = (".csv", ".jsonl")


@dataclass(frozen=True)
class LabelRow:
    path: str
    label: str
    annotations: int
    agreement: float
    round: int | None
    split: str
    copy_of: str | None


def _samples_and_rounds(session, campaign_id: int) -> tuple[list[Sample], dict[int, int]]:
    """The campaign's samples in id order, and the index of the round that selected each
    selected one (label and mask exports both report it)."""
    samples = list(session.scalars(select(Sample).where(Sample.campaign_id == campaign_id).order_by(Sample.id)))
    chosen_in = dict(session.execute(
        select(Selection.sample_id, Round.index).join(Round, Round.id == Selection.round_id)
        .where(Selection.campaign_id == campaign_id)
    ).all())
    return samples, chosen_in


def _path(data, uri: str) -> str:
    """A sample's file as the export writes it (``path`` and ``copy_of`` alike): absolute for
    files, the URI for in-memory datasets."""
    where = data.store.locate(uri)
    return str(where) if where is not None else uri


def labeled_rows(engine: Engine, campaign_name: str) -> list[LabelRow]:
    """Every labeled sample of the campaign (and its copies), in sample order."""
    with session_scope(engine) as session:
        campaign = require_campaign(session, campaign_name)
        config = CampaignConfig.from_dict(campaign.config)
        resolved = resolved_labels(session, campaign.id, config.annotations_per_task)
        samples, chosen_in = _samples_and_rounds(session, campaign.id)
    data = campaign_data(config)
    by_id = {s.id: s for s in samples}
    rows = []
    for sample in samples:
        first = by_id[sample.duplicate_of] if sample.duplicate_of else sample
        label = resolved.get(first.id)
        if label is None:
            continue
        rows.append(LabelRow(
            path=_path(data, sample.uri), label=label.label,
            annotations=label.votes, agreement=round(label.agreement, 4),
            round=chosen_in.get(first.id), split=sample.split.value,
            copy_of=_path(data, first.uri) if first is not sample else None,
        ))
    return rows


@dataclass(frozen=True)
class MaskRow:
    path: str
    mask: str
    annotations: int
    agreement: float | None
    round: int | None
    split: str
    copy_of: str | None


#: Colours of the exported palette PNGs: class 0 black, then distinct colours; 255 (ignored) white.
_PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (67, 99, 216), (245, 130, 49), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (188, 246, 12), (250, 190, 190), (0, 128, 128)]


def mask_file_name(uri: str) -> Path:
    """The exported mask's path (relative to ``masks/``) of a sample URI: suffix ``.png``, ``..``
    parts as ``_parent_``, so a mask file never lands outside the export folder."""
    parts = [("_parent_" if part == ".." else part) for part in Path(uri.replace("\\", "/")).parts
             if part not in ("", ".", "/")]
    if not parts:
        raise ConfigError(f"sample URI {uri!r} cannot name a mask file")
    return Path(*parts).with_suffix(".png")


def write_palette_mask(mask, path: Path) -> None:
    """Save a class-index mask ``[H, W]`` (0..255) as a palette PNG whose index is the class."""
    import numpy as np
    from PIL import Image

    colours = [c for i in range(256) for c in (_PALETTE[i % len(_PALETTE)] if i < 255 else (255, 255, 255))]
    image = Image.fromarray(np.ascontiguousarray(np.asarray(mask, dtype=np.uint8)), mode="P")
    image.putpalette(colours)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")


def mask_rows(engine: Engine, campaign_name: str, folder: Path,
              on_mask: Callable[[int, int], None] | None = None) -> list[MaskRow]:
    """Write every labeled sample's resolved mask under ``folder/masks`` (copies too); their rows.
    ``on_mask(written, total)`` is called after each file (a progress bar)."""
    import math

    from activelabel.campaign.segmentation_round import resolved_mask_labels

    with session_scope(engine) as session:
        campaign = require_campaign(session, campaign_name)
        config = CampaignConfig.from_dict(campaign.config)
        campaign_id, labels = campaign.id, list(campaign.labels)
        resolved_ids = resolved_labels(session, campaign.id, config.annotations_per_task)
        samples, chosen_in = _samples_and_rounds(session, campaign.id)
    masks = resolved_mask_labels(engine, campaign_id, len(labels))
    data = campaign_data(config)
    by_id = {s.id: s for s in samples}
    firsts = [(sample, by_id[sample.duplicate_of] if sample.duplicate_of else sample) for sample in samples]
    labeled = [(sample, first) for sample, first in firsts if first.id in masks and first.id in resolved_ids]
    rows = []
    for sample, first in labeled:
        label = masks[first.id]
        relative = Path("masks") / mask_file_name(sample.uri)
        write_palette_mask(label.mask, folder / relative)
        if on_mask is not None:
            on_mask(len(rows) + 1, len(labeled))
        rows.append(MaskRow(
            path=_path(data, sample.uri), mask=relative.as_posix(),
            annotations=label.votes,
            agreement=None if math.isnan(label.agreement) else round(label.agreement, 4),
            round=chosen_in.get(first.id), split=sample.split.value,
            copy_of=_path(data, first.uri) if first is not sample else None,
        ))
    return rows


@dataclass(frozen=True)
class MaskChangeRow:
    """One edit or deletion of a mask annotation, as ``mask-history.csv`` lists it.

    ``change``: the ``annotation_change`` id (oldest first); ``annotation``: the backend's
    annotation id (Label Studio's); ``old_mask``: the replaced mask's file relative to the
    manifest, None when none was kept; ``mask``: the sample's current resolved mask file, None
    when the sample has no accepted mask any more; times in ISO 8601, UTC."""

    path: str
    change: int
    kind: str
    annotation: str
    annotator: str
    round: int | None
    old_mask: str | None
    mask: str | None
    old_status: str
    new_status: str | None
    old_updated_at: str | None
    new_updated_at: str | None
    changed_at: str


def _iso(value) -> str | None:
    from datetime import timezone

    if value is None:
        return None
    return (value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)).isoformat()


def mask_history_rows(engine: Engine, campaign_name: str, folder: Path,
                      written: set[str] = frozenset()) -> list[MaskChangeRow]:
    """Write each kept old mask of the campaign's edited or deleted annotations under
    ``folder/mask-history`` (palette PNGs, as the current masks); their rows, oldest first.

    ``written``: the current mask files the export wrote (``MaskRow.mask``), for the ``mask`` column.
    """
    from activelabel.pipeline.masks import mask_from_png_bytes

    with session_scope(engine) as session:
        campaign = require_campaign(session, campaign_name)
        config = CampaignConfig.from_dict(campaign.config)
        changes = session.execute(
            select(AnnotationChange, Sample.uri, Round.index)
            .join(Sample, Sample.id == AnnotationChange.sample_id)
            .outerjoin(Round, Round.id == AnnotationChange.round_id)
            .where(AnnotationChange.campaign_id == campaign.id)
            .order_by(AnnotationChange.id)
        ).all()
        session.expunge_all()
    if not changes:
        return []
    data = campaign_data(config)
    rows = []
    for change, uri, round_index in changes:
        relative, current = None, (Path("masks") / mask_file_name(uri)).as_posix()
        if change.old_mask is not None:
            stem = mask_file_name(uri).with_suffix("")
            name = f"change-{change.id}-annotation-{change.external_id}-{change.kind.value}.png"
            relative = Path(HISTORY_FOLDER) / stem / name
            write_palette_mask(mask_from_png_bytes(change.old_mask, where=f"annotation_change {change.id}"),
                               folder / relative)
        rows.append(MaskChangeRow(
            path=_path(data, uri), change=change.id, kind=change.kind.value, annotation=change.external_id,
            annotator=change.annotator, round=round_index,
            old_mask=None if relative is None else relative.as_posix(), mask=current if current in written else None,
            old_status=change.old_status.value,
            new_status=None if change.new_status is None else change.new_status.value,
            old_updated_at=_iso(change.old_updated_at), new_updated_at=_iso(change.new_updated_at),
            changed_at=_iso(change.changed_at),
        ))
    return rows


def _write_rows(target: Path, rows: list, kind: type) -> None:
    """``rows`` as CSV or JSON Lines (by ``target``'s suffix), replacing ``target`` at once."""
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        if target.suffix.lower() == ".csv":
            writer = csv.DictWriter(handle, fieldnames=list(kind.__dataclass_fields__))
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)
        else:
            handle.writelines(json.dumps(asdict(r)) + "\n" for r in rows)
    tmp.replace(target)  # never a half-written export


@dataclass(frozen=True)
class ExportedLabels:
    """What :func:`export_labels` wrote: ``rows`` in the file, of which ``copies`` are
    byte-identical copies carrying their original's label (``copy_of`` set)."""

    rows: int
    copies: int
    # Segmentation: the mask history's manifest (None: no annotation was edited or deleted),
    # its rows (changes) and the old masks written.
    history: Path | None = None
    changes: int = 0
    old_masks: int = 0

    @property
    def labeled(self) -> int:
        """Labeled samples, copies not counted: the figure ``activelabel status`` shows."""
        return self.rows - self.copies

    def describe(self) -> str:
        """``"160 labeled samples (+1 copy labeled with its original)"``."""
        from activelabel.campaign.summary import counted

        copies = (f" (+{counted(self.copies, 'copy', 'copies')} labeled with "
                  f"{'its original' if self.copies == 1 else 'their originals'})") if self.copies else ""
        return counted(self.labeled, "labeled sample") + copies

    def describe_history(self) -> str | None:
        """``"Mask history: 2 edited or deleted mask annotations (2 old masks kept) in
        out/mask-history.csv, the old masks under out/mask-history/"``; None without a history."""
        from activelabel.campaign.summary import counted

        if self.history is None:
            return None
        return (f"Mask history: {counted(self.changes, 'edited or deleted mask annotation')} "
                f"({counted(self.old_masks, 'old mask')} kept) in {self.history}, the old masks under "
                f"{self.history.parent / HISTORY_FOLDER}/")


def export_labels(engine: Engine, campaign_name: str, target: Path,
                  on_mask: Callable[[int, int], None] | None = None) -> ExportedLabels:
    """Write the labels to ``target`` (.csv or .jsonl); returns how many rows (and copies).

    Segmentation campaigns: the masks go to ``masks/`` beside ``target`` (see the module
    docstring), the manifest to ``target``; edited or deleted mask annotations, if any, to
    ``mask-history/`` and ``mask-history.csv`` (or ``.jsonl``) beside it. ``on_mask(written,
    total)`` is called after each mask file."""
    if target.suffix.lower() not in FORMATS:
        raise ConfigError(f"--to {target}: use a .csv or .jsonl file name")
    with session_scope(engine) as session:
        task = require_campaign(session, campaign_name).task_kind
    target.parent.mkdir(parents=True, exist_ok=True)
    history, changes = None, []
    if task == "segmentation":
        history = target.with_name(HISTORY_NAME + target.suffix)
        if history == target:
            raise ConfigError(f"--to {target}: that name is the mask history's; give the labels file another name")
        rows, kind = mask_rows(engine, campaign_name, target.parent, on_mask), MaskRow
        changes = mask_history_rows(engine, campaign_name, target.parent, {r.mask for r in rows})
    else:
        rows, kind = labeled_rows(engine, campaign_name), LabelRow
    _write_rows(target, rows, kind)
    if changes:
        _write_rows(history, changes, MaskChangeRow)
    return ExportedLabels(len(rows), sum(r.copy_of is not None for r in rows),
                          history if changes else None, len(changes), sum(c.old_mask is not None for c in changes))


@dataclass(frozen=True)
class ExportedModel:
    """What :func:`export_model` wrote: the round's model version and index, how many members
    (1: a single model), and the round's calibration (``{"temperature", "mixture_temperature",
    "predictor"}``, None when it fitted none) as an ensemble file carries it."""

    version: str
    round: int
    members: int = 1
    calibration: dict | None = None

    def details(self) -> str:
        """What ``export`` adds after ``Wrote model <version> to <file>``: nothing for a single
        model; an ensemble's ``": an ensemble of 3 members (round 3), temperature 1.42"``."""
        if self.members == 1:
            return ""
        cal = self.calibration or {}
        kept = [f"{name} {value:.3g}" for name, value in (
            ("temperature", float(cal.get("temperature", 1.0))),
            ("mixture temperature", float(cal.get("mixture_temperature", 1.0)))) if value != 1.0]
        if kept:
            temperature = ", ".join(kept)
        elif cal:
            temperature = "no temperature kept (the round's calibration kept T = 1)"
        else:
            temperature = "no temperature fitted"
        return f": an ensemble of {self.members} members (round {self.round}), {temperature}"


def _file_calibration(calibration: dict | None) -> dict | None:
    """The part of a round's stored calibration a model file carries: the temperatures (T2 is
    1.0 for rounds stored before it, and for segmentation) and what they were fitted for."""
    if not calibration or "temperature" not in calibration:
        return None
    return {"temperature": float(calibration["temperature"]),
            "mixture_temperature": float(calibration.get("mixture_temperature", 1.0)),
            "predictor": calibration.get("predictor")}


def export_model(engine: Engine, campaign_name: str, target: Path) -> ExportedModel:
    """Write the newest trained round's model with architecture and label set; what it wrote.

    A single model is an ``activelabel-model/1`` file (segmentation: the U-Net file of
    :func:`_export_segmenter`), as always. A deep-ensemble round (more than one member
    checkpoint) writes every member, in member order, with the round's fitted temperatures
    (``activelabel-model/2``, see :mod:`activelabel.pipeline.model_file`): one member alone is
    not the model the campaign scored and measured with."""
    from activelabel.pipeline.checkpoint import load_model
    from activelabel.pipeline.model import ModelSpec
    from activelabel.pipeline.model_file import save_ensemble_file, save_model_file

    with session_scope(engine) as session:
        campaign = require_campaign(session, campaign_name)
        newest = session.scalar(
            select(Round).join(ModelCheckpoint, ModelCheckpoint.round_id == Round.id)
            .where(Round.campaign_id == campaign.id).order_by(Round.index.desc()).limit(1)
        )
        if newest is None:
            raise CampaignStateError(f"campaign {campaign_name!r} has not trained a model yet")
        checkpoints = list(session.scalars(
            select(ModelCheckpoint).where(ModelCheckpoint.round_id == newest.id).order_by(ModelCheckpoint.member)))
        session.expunge_all()
        labels, segmentation = list(campaign.labels), CampaignConfig.from_dict(campaign.config).task == "segmentation"
    calibration = _file_calibration(newest.calibration) if len(checkpoints) > 1 else None
    exported = ExportedModel(checkpoints[0].version, newest.index, len(checkpoints), calibration)
    provenance = {"campaign": campaign_name, "version": exported.version}
    if len(checkpoints) > 1:
        provenance |= {"round": newest.index, "members": len(checkpoints)}
    target.parent.mkdir(parents=True, exist_ok=True)
    if segmentation:
        _export_segmenter(checkpoints, labels, provenance, calibration, target)
        return exported
    import torch

    spec = ModelSpec.from_dict(checkpoints[0].architecture)
    models = [load_model(spec, c.state, torch.device("cpu")) for c in checkpoints]
    if len(models) == 1:
        save_model_file(target, models[0], spec, labels, extra=provenance)
    else:
        save_ensemble_file(target, models, spec, labels, calibration=calibration, extra=provenance)
    return exported


def _export_segmenter(checkpoints: list[ModelCheckpoint], labels: list[str], provenance: dict,
                      calibration: dict | None, target: Path) -> None:
    """A segmentation round's U-Net as one torch file: ``{"state_dict", "architecture",
    "labels", "campaign", "version"}`` (plain tensors and strings: ``torch.load(weights_only=True)``
    reads it). A campaign's ``[model] weights`` accepts the file as it is (the loader takes a
    dict holding ``"state_dict"``), so a new campaign can start from this one's model.

    An ensemble round's file holds ``"members"`` (one state_dict per U-Net, in member order)
    instead of ``"state_dict"``, plus ``"round"``, ``"members"`` (in the provenance) and
    ``"calibration"`` (the round's per-pixel ``{"temperature", "mixture_temperature" (T2, 1.0
    when not kept), "predictor"}``, or None). Why no ``"state_dict"``: any reader of it, ``[model] weights``
    included, would take member 0 for the model; without it ``[model] weights`` refuses the
    file ("holds no state_dict of tensors"), and one member saved on its own
    (``torch.save(f["members"][0], "member0.pt")``) is the file it takes."""
    import torch

    from activelabel.campaign.segmentation_round import load_segmenter

    models = [load_segmenter(c, torch.device("cpu")) for c in checkpoints]
    payload = {"architecture": models[0].spec.to_dict(), "labels": labels, **provenance}
    if len(models) == 1:
        payload["state_dict"] = models[0].state_dict()
    else:
        payload |= {"members": [m.state_dict() for m in models], "calibration": calibration}
    tmp = target.with_name(target.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(target)  # never a half-written file
