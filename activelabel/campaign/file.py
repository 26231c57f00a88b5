"""Campaign files: one TOML file holds everything a campaign needs, except secrets.

``activelabel init campaign.toml`` writes a commented template (:func:`template`);
``activelabel run campaign.toml`` reads it (:func:`load_campaign_file`). The file is checked by
pydantic before anything is written: an unknown key names the nearest valid one, a wrong type
names the key and the value, and every message names the file. Paths in the file are relative
to the file's folder, so a campaign folder can be moved or shared as a whole.

Secrets are never read from the file: Label Studio's token comes from ``$LABEL_STUDIO_API_KEY``
and the database password from ``$ACTIVELABEL_DATABASE_PASSWORD`` (see :class:`Secrets`).
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from activelabel.campaign.config import (
    ARCHITECTURES,
    PIXEL_AGGREGATIONS,
    RECIPES,
    SEGMENTATION_ARCHITECTURES,
    TASKS,
    CampaignConfig,
)
from activelabel.campaign.recipes import recipe_defaults
from activelabel.errors import ActiveLabelError, ConfigError


class CampaignFileError(ConfigError):
    """A campaign file that cannot be used; the message names the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


class CampaignSection(_Section):
    name: str = Field(description="Campaign name: the key for status, sync, export (unique per database; no / or \\)")
    task: Literal[TASKS] = Field(  # type: ignore[valid-type]
        "classification", description="'classification' (a label per image) or 'segmentation' (a mask per image; see [segmentation])"
    )
    strategy: str = Field("bald", description="Acquisition strategy (see `activelabel strategies`)")
    rounds: int = Field(10, description="Labeling rounds to run, evaluation and cold-start rounds included (a rerun continues up to this many)")
    batch_size: int = Field(20, description="Samples sent to annotators each round")
    min_labels_to_train: int | None = Field(
        None, description="Cold start: below this many labels a round sends a random batch (default: batch_size)"
    )
    mc_samples: int = Field(20, description="Stochastic forward passes per pool sample (T, MC dropout)")
    calibrate: bool = Field(
        True, description="Fit a temperature each round on 15 % of the labels held out from training (from 500 labels on; segmentation: a per-pixel temperature on held-out images, from 20 on); acquisition then uses the calibrated probabilities"
    )
    uncertainty: Literal["mc_dropout", "deterministic", "ensemble", "ensemble+mc_dropout"] = Field(
        "mc_dropout", description="'mc_dropout' (mc_samples passes), 'deterministic' (one pass: the softmax baseline), 'ensemble' (ensemble_size models) or 'ensemble+mc_dropout'"
    )
    ensemble_size: int = Field(5, description="Models of different seeds trained each round by the ensemble methods (M)")
    refine_passes: int | None = Field(
        None, description="Refinement: the best refine_candidates pool samples by the strategy's score are scored again with this many MC passes (own mask stream) and the batch is their top; 0 turns it off; unset: 1000, capped at the first stage's cost unless only the model's head is sampled. bald, mean_std, variation_ratios with MC dropout only"
    )
    refine_candidates: int | None = Field(
        None, description="Pool samples refined each round (at least batch_size; default: 10 x batch_size)"
    )
    ood_percentile: float = Field(
        5.0, description="Pool samples whose feature density is below this percentile of the labeled set's are flagged out of distribution"
    )
    epochs: int = Field(40, description="Training epochs per round (at least 200 steps are taken)")
    seed: int = Field(0, description="Seed for evaluation draw, cold-start batches, training and dropout")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu' or 'cuda[:N]'")
    cpu_threads: int = Field(1, description="CPU threads for torch")


class DataSection(_Section):
    pool: str = Field(description="Unlabeled images: a folder (any layout, read recursively), a manifest (.csv/.jsonl with a path column) or one .npy array [N, H, W] / [N, C, H, W] (memory-mapped; rows are samples <file>.npy#<row>)")
    labeled: str | None = Field(None, description="Seed labels: an ImageFolder (one sub-folder per label) or a manifest with path,label")
    test: str | None = Field(None, description="Labeled test set (folder or manifest); without it annotators label an evaluation set first")
    labels: list[str] | None = Field(None, description="The label set; required when nothing labeled is given")
    evaluation_size: int = Field(100, description="Without data.test: random pool samples labeled first as the yardstick (never trained on)")
    follow_new_files: bool = Field(True, description="Images added to the pool folder or manifest join the pool when the next round starts; false keeps the pool as created (a fixed pool for a fair comparison)")
    image_size: int = Field(28, description="Images are resized to image_size x image_size pixels")
    channels: Literal[1, 3] = Field(1, description="1 = grayscale, 3 = RGB")
    mean: list[float] | None = Field(None, description="Per-channel normalisation mean (e.g. [0.5]); default: none")
    std: list[float] | None = Field(None, description="Per-channel normalisation std (e.g. [0.25]); default: none")
    augmentation: bool = Field(False, description="Random shifts while training")
    workers: int = Field(2, description="DataLoader worker processes that decode images while scoring")


class ModelSection(_Section):
    architecture: Literal[ARCHITECTURES + SEGMENTATION_ARCHITECTURES] = Field(  # type: ignore[valid-type]
        "small_cnn", description=f"One of: {', '.join(ARCHITECTURES)}; segmentation: {', '.join(SEGMENTATION_ARCHITECTURES)}"
    )
    weights: str | None = Field(None, description="A weights file to start from (a path; nothing is downloaded)")
    freeze_backbone: bool = Field(False, description="Train only the classifier head (with weights)")
    dropout: float = Field(0.5, description="Dropout before the classifier (MC dropout samples it)")
    recipe: Literal[RECIPES] | None = Field(  # type: ignore[valid-type]
        None, description="Training recipe: unset (Adam with weight decay 1e-4 on all weights, batches of 32, at least 200 steps) or 'gal2017' (Gal et al. 2017: batches of 128, Adam, 50 fixed epochs, L2 penalty weight_decay_scale / N on the hidden dense layer; architecture gal_cnn unless set)"
    )
    weight_decay_scale: float | None = Field(
        None, description="Weight decay c / N (N: labels trained on); with recipe 'gal2017' the L2 penalty's c (default 3.5)"
    )
    fixed_epochs: bool | None = Field(
        None, description="Train exactly campaign.epochs epochs (default: at least 200 steps; recipe 'gal2017': yes)"
    )


class AnnotatorSection(_Section):
    kind: Literal["simulated", "labelstudio"] = Field(
        "labelstudio", description="'labelstudio' (URL from $LABEL_STUDIO_URL, token from $LABEL_STUDIO_API_KEY) or 'simulated'"
    )
    truth: str | None = Field(None, description="Simulated only: manifest of true labels the simulation answers from")
    noise: float = Field(0.0, description="Simulated only: share of wrong answers")
    annotations_per_task: int = Field(1, description="Annotators per sample; the label is their majority vote")
    min_new_labels: int | None = Field(None, description="A round completes once this many of its samples are labeled (default: all)")
    image_url_prefix: str | None = Field(None, description="Image URL = prefix + sample path (default: embed images)")
    document_root: str | None = Field(None, description="Label Studio's LOCAL_FILES_DOCUMENT_ROOT: serve image files from there")


class StopSection(_Section):
    label_budget: int | None = Field(None, description="Stop once this many labels are spent")
    target_accuracy: float | None = Field(None, description="Stop once test accuracy reaches this (0-1)")
    plateau_threshold: float | None = Field(None, description="Stop when mean pool uncertainty changes less than this ...")
    plateau_rounds: int = Field(3, description="... over this many rounds")


class SegmentationSection(_Section):
    aggregation: Literal[PIXEL_AGGREGATIONS] = Field(  # type: ignore[valid-type]
        "top_q", description="How a per-pixel uncertainty map becomes an image score: mean, max, top_q or class_weighted"
    )
    aggregation_q: float = Field(0.1, description="top_q: the fraction of each image's most uncertain pixels averaged")
    heatmap_dir: str | None = Field(None, description="Folder for heatmap PNGs of the selected images (default: activelabel-heatmaps/<name> beside the campaign file)")
    labeled_masks: str | None = Field(None, description="Masks of data.labeled's images: same relative path, suffix .png (required with data.labeled)")
    test_masks: str | None = Field(None, description="Masks of data.test's images (required with data.test)")
    ignore_index: int = Field(255, description="Mask value of pixels that take no part in training, metrics or scores")
    palette: dict[str, list[int]] | None = Field(
        None, description="Colour masks: class name -> [r, g, b] (default: a mask pixel is the class index; palette PNGs by their index)"
    )
    ignore_color: list[int] | None = Field(None, description="Colour masks: the [r, g, b] of ignored pixels")


class DatabaseSection(_Section):
    url: str | None = Field(
        None, description="SQLAlchemy URL without password (password: $ACTIVELABEL_DATABASE_PASSWORD); a relative SQLite path is read from this file's folder; default: $ACTIVELABEL_DATABASE_URL, else activelabel.db next to this file"
    )


class DaskSection(_Section):
    address: str | None = Field(
        None, description="Score active rounds as shards on this Dask scheduler (tcp://host:8786); see docs/scale.md"
    )
    workers: int | None = Field(
        None, description="Or: score them on a local Dask cluster of this many worker processes (default: one process, no Dask)"
    )


class CampaignFile(_Section):
    campaign: CampaignSection
    data: DataSection
    model: ModelSection = ModelSection()
    annotator: AnnotatorSection = AnnotatorSection()
    stop: StopSection = StopSection()
    segmentation: SegmentationSection = SegmentationSection()
    database: DatabaseSection = DatabaseSection()
    dask: DaskSection = DaskSection()


class Secrets(BaseSettings):
    """Secrets, from the environment only (never the campaign file, the database or logs)."""

    model_config = SettingsConfigDict(extra="ignore")

    label_studio_api_key: SecretStr | None = Field(None, validation_alias="LABEL_STUDIO_API_KEY")
    database_password: SecretStr | None = Field(None, validation_alias="ACTIVELABEL_DATABASE_PASSWORD")


SECTIONS: dict[str, type[_Section]] = {
    "campaign": CampaignSection,
    "data": DataSection,
    "model": ModelSection,
    "annotator": AnnotatorSection,
    "stop": StopSection,
    "segmentation": SegmentationSection,
    "database": DatabaseSection,
    "dask": DaskSection,
}
_PATH_KEYS = {("data", "pool"), ("data", "labeled"), ("data", "test"), ("model", "weights"), ("annotator", "truth"),
              ("segmentation", "heatmap_dir"), ("segmentation", "labeled_masks"), ("segmentation", "test_masks")}


def _all_keys() -> list[str]:
    return [f"{section}.{key}" for section, model in SECTIONS.items() for key in model.model_fields]


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in error["loc"])
    if error["type"] == "extra_forbidden":
        guess = difflib.get_close_matches(where, _all_keys() + list(SECTIONS), n=1, cutoff=0.5)
        if not guess and "." in where:  # a known key in the wrong section
            key = where.rsplit(".", 1)[1]
            guess = [k for k in _all_keys() if k.endswith(f".{key}")][:1]
        hint = f"; did you mean {guess[0]!r}?" if guess else f"; valid keys: {', '.join(_all_keys())}"
        return f"unknown key {where!r}{hint}"
    if error["type"] == "missing":
        return f"missing key {where!r}"
    value = error.get("input")
    return f"{where}: {error['msg'].lower()}, got {value!r}"


def parse_campaign_file(path: str | Path) -> CampaignFile:
    """Read and check a campaign file (raises CampaignFileError naming the file and the key)."""
    file = Path(path)
    if not file.is_file():
        raise CampaignFileError(
            f"campaign file {file} does not exist; write one with `activelabel init {file}`"
        )
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise CampaignFileError(f"{file}: not valid TOML ({error})") from None
    parsed = _validated(file, raw)
    if parsed.database.url and _has_password(parsed.database.url):
        raise CampaignFileError(
            f"{file}: database.url holds a password; remove it from the file and export "
            "ACTIVELABEL_DATABASE_PASSWORD instead"
        )
    return parsed


def _validated(file: Path, raw: dict) -> CampaignFile:
    """``raw`` (a campaign file's tables) as a :class:`CampaignFile`; the first problem named
    with the file and the key (``CampaignFileError``), and how many more there are."""
    try:
        return CampaignFile.model_validate(raw)
    except ValidationError as error:
        problems = [_describe(e) for e in error.errors()]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CampaignFileError(f"{file}: {problems[0]}{more}") from None


#: The tables of a campaign file an experiment file may hold for arms on your own folders.
OWN_DATA_TABLES = ("data", "model", "annotator", "stop", "segmentation")


def experiment_arm_settings(file: str | Path, campaign: dict, tables: dict) -> dict:
    """The settings every arm of an experiment on your own folders shares: the experiment
    file's ``[campaign]`` and its campaign-file tables (``[data]``, ``[annotator]``,
    ``[segmentation]``, ...) read exactly as a campaign file's (paths relative to the file's
    folder), less what each arm sets itself (name, strategy, seed). Raises
    ``CampaignFileError`` naming the file and the key for anything a campaign file refuses."""
    file = Path(file)
    parsed = _validated(file, {"campaign": {**campaign, "name": "experiment-arm"}, **tables})
    settings = to_config(parsed, file.resolve().parent).to_dict()
    return {k: v for k, v in settings.items() if k not in ("name", "strategy", "seed")}


def _has_password(url: str) -> bool:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password is not None
    except ArgumentError:
        return "password=" in url


def _resolve(base: Path, value: str | None) -> str | None:
    if value is None or value == "":
        return None
    path = Path(value).expanduser()
    return str((path if path.is_absolute() else base / path).resolve())


def _heatmap_dir(base: Path, name: str, task: str, section: SegmentationSection) -> str | None:
    """``segmentation.heatmap_dir`` resolved against the file's folder; for a segmentation campaign
    that leaves it out, ``activelabel-heatmaps/<name>`` beside the file, as its default database
    is: the heatmaps of every run land in one folder whichever folder a command ran in (they
    went to the working folder, so rounds run from two folders split them)."""
    if section.heatmap_dir or task != "segmentation":
        return _resolve(base, section.heatmap_dir)
    from activelabel.naming import file_safe

    return str((base / "activelabel-heatmaps" / file_safe(name)).resolve())


def to_config(parsed: CampaignFile, base: Path, overrides: dict[str, Any] | None = None) -> CampaignConfig:
    """The stored campaign settings for a parsed file; ``overrides`` (CLI options) win."""
    c, d, m, a, s = parsed.campaign, parsed.data, parsed.model, parsed.annotator, parsed.stop
    g = parsed.segmentation
    values: dict[str, Any] = dict(
        name=c.name, task=c.task, dataset="files", strategy=c.strategy, rounds=c.rounds, batch_size=c.batch_size,
        initial_labeled=0, mc_samples=c.mc_samples, calibrate=c.calibrate, uncertainty=c.uncertainty, ensemble_size=c.ensemble_size, refine_passes=c.refine_passes, refine_candidates=c.refine_candidates, ood_percentile=c.ood_percentile, seed=c.seed, epochs=c.epochs, device=c.device,
        cpu_threads=c.cpu_threads, min_labels_to_train=c.min_labels_to_train,
        data_pool=_resolve(base, d.pool), data_labeled=_resolve(base, d.labeled),
        data_test=_resolve(base, d.test), labels=tuple(d.labels) if d.labels else None,
        evaluation_size=0 if d.test else d.evaluation_size,
        follow_new_files=d.follow_new_files,
        image_size=d.image_size, channels=d.channels,
        mean=tuple(d.mean) if d.mean else None, std=tuple(d.std) if d.std else None,
        augmentation=d.augmentation, loader_workers=d.workers,
        architecture=m.architecture, weights=_resolve(base, m.weights),
        freeze_backbone=m.freeze_backbone, dropout=m.dropout,
        annotator=a.kind, truth=_resolve(base, a.truth), annotator_noise=a.noise,
        annotations_per_task=a.annotations_per_task, min_new_labels=a.min_new_labels,
        image_url_prefix=a.image_url_prefix, document_root=_resolve(base, a.document_root),
        label_budget=s.label_budget, target_accuracy=s.target_accuracy,
        plateau_threshold=s.plateau_threshold, plateau_rounds=s.plateau_rounds,
        aggregation=g.aggregation, aggregation_q=g.aggregation_q, heatmap_dir=_heatmap_dir(base, c.name, c.task, g),
        labeled_masks=_resolve(base, g.labeled_masks), test_masks=_resolve(base, g.test_masks),
        ignore_index=g.ignore_index, palette=_palette(g, d.labels),
    )
    values |= dict(recipe=m.recipe, weight_decay_scale=m.weight_decay_scale, fixed_epochs=m.fixed_epochs)
    if m.recipe is not None:  # the recipe's defaults for what the file leaves unset
        values |= {key: None for key, section in (("architecture", m), ("epochs", c)) if key not in section.model_fields_set}
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    values = recipe_defaults(values)
    values["fixed_epochs"] = bool(values["fixed_epochs"])
    return CampaignConfig(**values)


def _palette(section: SegmentationSection, labels: list[str] | None) -> tuple | None:
    """``segmentation.palette`` ({name: [r, g, b]}) as ((r, g, b, class index), ...)."""
    if section.palette is None:
        if section.ignore_color is not None:
            raise ConfigError("segmentation.ignore_color needs segmentation.palette (colour masks)")
        return None
    index = {name: i for i, name in enumerate(labels or [])}
    entries = []
    for name, colour in section.palette.items():
        if name not in index:
            raise ConfigError(f"segmentation.palette: class {name!r} is not in data.labels {labels or []}")
        entries.append((name, colour))
    if section.ignore_color is not None:
        entries.append(("ignore_color", section.ignore_color))
    out = []
    for name, colour in entries:
        if len(colour) != 3 or not all(0 <= int(v) <= 255 for v in colour):
            raise ConfigError(f"segmentation.palette: {name} must be [r, g, b] with values 0..255, got {colour}")
        out.append((*(int(v) for v in colour), index.get(name, section.ignore_index)))
    return tuple(out)


def load_campaign_file(path: str | Path, overrides: dict[str, Any] | None = None) -> tuple[CampaignConfig, str | None]:
    """(campaign settings, database URL from the file or None) — errors name the file.

    A relative SQLite path in the URL is made absolute against the file's folder (see
    :func:`database_url`)."""
    file = Path(path)
    parsed = parse_campaign_file(file)
    try:
        to_config(parsed, file.resolve().parent)
    except ActiveLabelError as error:
        raise CampaignFileError(f"{file}: {error}") from None
    # The file is fine on its own: a problem now comes from a command-line option.
    return to_config(parsed, file.resolve().parent, overrides), database_url(parsed, file)


def database_url(parsed: CampaignFile, file: str | Path) -> str | None:
    """The file's ``[database] url`` with a relative SQLite path read from the file's folder,
    like the file's other paths (``sqlite:///labels.db`` -> ``sqlite:////<folder>/labels.db``);
    other URLs unchanged; None when the file sets none (the caller's default then applies:
    see :func:`activelabel.storage.location.database_for_file`)."""
    from activelabel.storage.location import anchor_sqlite_url

    url = parsed.database.url
    return anchor_sqlite_url(url, Path(file).resolve().parent) if url else None


def dask_settings(path: str | Path) -> tuple[str | None, int | None]:
    """The file's ``[dask]`` (scheduler address, local workers): where active rounds are scored,
    like ``[database]`` a property of where the campaign runs, not stored with it. Raises
    :class:`CampaignFileError` naming the file when both are given."""
    parsed = parse_campaign_file(path).dask
    if parsed.address is not None and parsed.workers is not None:
        raise CampaignFileError(f"{path}: give dask.address (an existing cluster) or dask.workers (a local one), "
                                "not both")
    if parsed.workers is not None and parsed.workers < 1:
        raise CampaignFileError(f"{path}: dask.workers must be at least 1, got {parsed.workers}")
    return parsed.address, parsed.workers


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


# Stored settings whose campaign-file key is not ``<section>.<same name>``.
_RENAMED_KEYS = {"annotator": "annotator.kind", "annotator_noise": "annotator.noise", "loader_workers": "data.workers"}


def file_key(setting: str) -> str | None:
    """The campaign-file key a stored setting is read from (``batch_size`` ->
    ``campaign.batch_size``); None for one a file does not set (``dataset``, ``initial_labeled``)."""
    if setting in _RENAMED_KEYS:
        return _RENAMED_KEYS[setting]
    for section in ("campaign", "data", "model", "annotator", "stop", "segmentation"):
        if setting in SECTIONS[section].model_fields:
            return f"{section}.{setting}"
    return None


def _shown(value: Any) -> str:
    """A stored setting as the file writes it (tuples are TOML lists); None: unset."""
    if value is None:
        return "unset"
    return _toml_value(list(value) if isinstance(value, tuple) else value)


def _put_back(key: str, value: Any) -> str:
    """``key = value`` as the file writes it; for a value the campaign was created without, the
    line to leave out."""
    return f"no {key} (leave the key out)" if value is None else f"{key} = {_shown(value)}"


def changed_settings_message(file: str | Path, name: str, changes: list[tuple[str, Any, Any]],
                             why: str = "") -> str | None:
    """The refusal of changed fixed settings in a campaign file's words (trial 14 F6): the file,
    each key with the value the campaign was created with, and the two ways on. ``why``: why a
    setting that may change at other times is fixed now, said in brackets. None when a
    change is not a file key (the caller keeps its command-line wording)."""
    keys = [(file_key(setting), old, new) for setting, old, new in changes]
    if any(key is None for key, _, _ in keys):
        return None
    listed = "; ".join(f"{key} {_shown(old)} -> {_shown(new)}" for key, old, new in keys)
    back = ", ".join(_put_back(key, old) for key, old, _ in keys)
    return (f"{file}: campaign {name!r} already exists with other settings ({listed}); these settings are "
            f"fixed once a campaign is created{f' ({why})' if why else ''}: put back what it was created with ({back}), or start a new "
            f"campaign: another campaign.name or another database.url in {file}")


_EXAMPLES = {
    ("campaign", "name"): "my-campaign",
    ("data", "pool"): "images/",
    ("data", "labels"): ["cat", "dog"],
}


def template(name: str = "my-campaign") -> str:
    """A commented campaign file: every key with its default and a one-line meaning.

    Keys without a default value are commented out; uncomment the ones you need.
    """
    lines = [
        "# activelabel campaign file. Run it with `activelabel run <this file>`.",
        "# Paths are relative to this file's folder, and so is the database: activelabel.db",
        "# next to this file unless [database] url or $ACTIVELABEL_DATABASE_URL says otherwise.",
        "# Secrets never go here: export",
        "# LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY and ACTIVELABEL_DATABASE_PASSWORD instead.",
    ]
    for section, model in SECTIONS.items():
        lines += ["", f"[{section}]"]
        for key, field in model.model_fields.items():
            example = _EXAMPLES.get((section, key))
            if section == "campaign" and key == "name":
                example = name
            default = None if field.is_required() else field.default
            value = example if example is not None else default
            comment = f"  # {field.description}"
            if value is None:
                lines.append(f"# {key} = ...{comment}")
            else:
                lines.append(f"{key} = {_toml_value(value)}{comment}")
    return "\n".join(lines) + "\n"
