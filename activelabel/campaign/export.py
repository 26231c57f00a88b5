"""Export what a campaign produced: the labels (CSV or JSON Lines) and the latest model.

One row per labeled sample: its file path, the resolved label, how many annotations it got,
their agreement, the round that chose it (empty for labels handed over with the data) and its
split. Byte-identical copies of a labeled image get a row each, with ``copy_of`` naming the
sample that was labeled (one answer labels all copies).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from activelabel.campaign.config import CampaignConfig
from activelabel.campaign.data import campaign_data
from activelabel.errors import CampaignStateError, ConfigError
from activelabel.storage import ModelCheckpoint, Round, Sample, Selection, session_scope
from activelabel.storage.repository import require_campaign, resolved_labels

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


def labeled_rows(engine: Engine, campaign_name: str) -> list[LabelRow]:
    """Every labeled sample of the campaign (and its copies), in sample order."""
    with session_scope(engine) as session:
        campaign = require_campaign(session, campaign_name)
        config = CampaignConfig.from_dict(campaign.config)
        resolved = resolved_labels(session, campaign.id, config.annotations_per_task)
        samples = list(session.scalars(select(Sample).where(Sample.campaign_id == campaign.id).order_by(Sample.id)))
        chosen_in = dict(session.execute(
            select(Selection.sample_id, Round.index).join(Round, Round.id == Selection.round_id)
            .where(Selection.campaign_id == campaign.id)
        ).all())
    data = campaign_data(config)
    by_id = {s.id: s for s in samples}
    rows = []
    for sample in samples:
        first = by_id[sample.duplicate_of] if sample.duplicate_of else sample
        label = resolved.get(first.id)
        if label is None:
            continue
        where = data.store.locate(sample.uri)
        rows.append(LabelRow(
            path=str(where) if where is not None else sample.uri, label=label.label,
            annotations=label.votes, agreement=round(label.agreement, 4),
            round=chosen_in.get(first.id), split=sample.split.value,
            copy_of=first.uri if first is not sample else None,
        ))
    return rows


def export_labels(engine: Engine, campaign_name: str, target: Path) -> int:
    """Write the labels to ``target`` (.csv or .jsonl); returns the number of rows."""
    if target.suffix.lower() not in FORMATS:
        raise ConfigError(f"--to {target}: use a .csv or .jsonl file name")
    rows = labeled_rows(engine, campaign_name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        if target.suffix.lower() == ".csv":
            writer = csv.DictWriter(handle, fieldnames=list(LabelRow.__dataclass_fields__))
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)
        else:
            handle.writelines(json.dumps(asdict(r)) + "\n" for r in rows)
    tmp.replace(target)  # never a half-written export
    return len(rows)


def export_model(engine: Engine, campaign_name: str, target: Path) -> str:
    """Write the newest round's weights with architecture and label set; returns its version."""
    from activelabel.pipeline.checkpoint import load_model
    from activelabel.pipeline.model import ModelSpec
    from activelabel.pipeline.model_file import save_model_file

    with session_scope(engine) as session:
        campaign = require_campaign(session, campaign_name)
        checkpoint = session.scalar(
            select(ModelCheckpoint).join(Round, Round.id == ModelCheckpoint.round_id)
            .where(Round.campaign_id == campaign.id).order_by(Round.index.desc(), ModelCheckpoint.member).limit(1)
        )
        if checkpoint is None:
            raise CampaignStateError(f"campaign {campaign_name!r} has not trained a model yet")
        spec, state, version, labels = (ModelSpec.from_dict(checkpoint.architecture), checkpoint.state,
                                        checkpoint.version, list(campaign.labels))
    import torch

    model = load_model(spec, state, torch.device("cpu"))
    target.parent.mkdir(parents=True, exist_ok=True)
    save_model_file(target, model, spec, labels, extra={"campaign": campaign_name, "version": version})
    return version
