"""A campaign's settings, checked before anything is written.

``CampaignConfig`` is the flat, stored form (the ``campaign.config`` JSON column). Users write
it as a campaign file (:mod:`activelabel.campaign.file`) or as command-line options; both end
here, so every process that resumes the campaign sees the same settings. Secrets never live
here: Label Studio's token and the database password come from the environment at run time.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields

from activelabel.acquisition import get_strategy
from activelabel.errors import ConfigError, SettingsChangedError
from activelabel.pipeline.architectures import ARCHITECTURES
from activelabel.pipeline.segmentation_sizes import SEGMENTATION_ARCHITECTURES

# Settings that may change between runs of the same campaign without changing its meaning.
# Data locations are compared by resolved path and content hash instead (see campaign.data).
_MUTABLE = {
    "rounds", "device", "cpu_threads", "min_new_labels", "image_url_prefix", "document_root",
    "loader_workers", "label_budget", "target_accuracy", "plateau_threshold", "plateau_rounds",
    "data_pool", "data_labeled", "data_test", "truth", "heatmap_dir", "labeled_masks", "test_masks",
    "follow_new_files",
}
ANNOTATORS = ("simulated", "labelstudio")
UNCERTAINTY_METHODS = ("mc_dropout", "deterministic", "ensemble", "ensemble+mc_dropout")
#: Training recipes (see campaign.recipes): None is the default recipe.
RECIPES = ("gal2017",)
TASKS = ("classification", "segmentation")
#: The device names a campaign accepts, checked without torch: torch.device would take many more
#: (ipu, xpu, ...) that no campaign step supports; pipeline.device.resolve_device picks the device.
DEVICE_NAME = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
#: Segmentation strategies: the per-pixel map (acquisition.pixelwise) each one aggregates into an
#: image score; ``least_confidence`` scores 1 - max softmax; ``random`` draws seeded scores.
SEGMENTATION_STRATEGY_MAPS = {
    "entropy": "entropy", "bald": "bald", "mean_std": "variance", "least_confidence": "max_softmax", "random": None,
}
PIXEL_AGGREGATIONS = ("mean", "max", "top_q", "class_weighted")
#: Refinement candidates per batch slot when ``refine_candidates`` is not set.
REFINE_MULTIPLE = 10



def check_name(name: str, kind: str) -> None:
    """Refuse a campaign or experiment name that cannot work everywhere a name goes.

    A name becomes file names (the report's ``NAME.html``, the heatmap folder) and is typed as a
    CLI argument, where one holding a path separator is read as a file path. So an empty name
    and one holding ``/`` or ``\\`` are refused here, before anything is stored.

    Raises:
        ConfigError: naming the name, what is wrong and what to do.
    """
    if not name.strip():
        raise ConfigError(f"{kind} name must not be empty")
    separators = sorted({c for c in name if c in "/\\"})
    if separators:
        suggestion = re.sub(r"[/\\]+", "-", name)
        held = " and ".join(f"'{c}'" for c in separators)
        raise ConfigError(
            f"{kind} name '{name}' holds {held}: a name becomes a file name "
            f"and a CLI argument with a path separator is read as a file; choose a name without it "
            f"(e.g. '{suggestion}')"
        )


@dataclass(frozen=True)
class CampaignConfig:
    name: str
    # What a label is: "classification" (one class per image) or "segmentation" (a mask: one
    # class per pixel). Each kind brings its model, loss, metrics and scoring (campaign.kinds).
    task: str = "classification"
    # A built-in dataset spec ('digits', 'mnist:/dir', 'imagefolder:/dir', 'manifest:/labels.csv'), or
    # 'files' when the campaign reads its own pool/labeled/test sources (data_pool and friends).
    dataset: str = "digits"
    strategy: str = "bald"
    rounds: int = 10
    batch_size: int = 20
    # Built-in datasets only: this many random pool samples get the dataset's own labels at
    # creation (a simulation shortcut). Campaigns on your own data start from data_labeled.
    initial_labeled: int = 20
    mc_samples: int = 20
    # Hold out a validation split, fit a temperature (Guo et al. 2017) each round, and let
    # acquisition use the temperature-scaled probabilities (see campaign.calibrate; segmentation:
    # a per-pixel temperature on held-out images, campaign.segmentation_calibration).
    calibrate: bool = True
    # How the pool's predictive distribution is sampled: "mc_dropout" (mc_samples passes),
    # "deterministic" (one eval pass, T = 1: the softmax baseline; BALD-type strategies refuse
    # it), "ensemble" (ensemble_size models of different seeds, one pass each) or
    # "ensemble+mc_dropout" (ensemble_size x mc_samples passes).
    uncertainty: str = "mc_dropout"
    ensemble_size: int = 5
    # Refinement (campaign.refine): after the pool is scored with mc_samples passes, its
    # refine_candidates best samples by the strategy's score are scored again with refine_passes
    # passes under a second mask stream, and the batch is the top of those. For per-sample
    # strategies that read MC passes (bald, mean_std, variation_ratios) with MC dropout only.
    # refine_passes = 0: off; None: 1,000, capped at the first stage's cost unless only the head
    # is sampled (campaign.refine.refinement_passes); a number runs as set.
    # refine_candidates None: REFINE_MULTIPLE x the batch size.
    refine_passes: int | None = None
    refine_candidates: int | None = None
    # Feature density (DDU): a pool sample is flagged out of distribution when its log density
    # is below this percentile of the labeled set's out-of-fold log densities.
    ood_percentile: float = 5.0
    seed: int = 0
    test_fraction: float = 0.2
    epochs: int = 40
    device: str = "auto"
    # Small CNNs train fastest on one CPU thread; more threads pay off for larger images.
    cpu_threads: int = 1
    annotator_noise: float = 0.0
    # Who labels: "simulated" (the oracle) or "labelstudio" (server and key from the environment).
    annotator: str = "simulated"
    annotations_per_task: int = 1
    # A round completes once this many of its samples have resolved labels (None: all of them).
    min_new_labels: int | None = None
    # Label Studio images: URL prefix + sample URI; None embeds in-memory images as PNG data.
    image_url_prefix: str | None = None
    # Label Studio's LOCAL_FILES_DOCUMENT_ROOT: image files of the dataset are served from there.
    document_root: str | None = None
    # --- your own data (dataset == "files") ---
    data_pool: str | None = None
    data_labeled: str | None = None
    data_test: str | None = None
    labels: tuple[str, ...] | None = None
    # Without a test set, this many random pool samples are labeled first as the yardstick.
    evaluation_size: int = 0
    # Files added to data.pool (folder or manifest) since the last round join the pool when the
    # next round starts (campaign.growth); False keeps the pool as it was created.
    follow_new_files: bool = True
    truth: str | None = None
    image_size: int = 28
    channels: int = 1
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    augmentation: bool = False
    loader_workers: int = 0
    # Cold start: below this many labels a round trains nothing and sends a random batch.
    # None: the batch size.
    min_labels_to_train: int | None = None
    # --- model ---
    architecture: str = "small_cnn"
    weights: str | None = None
    freeze_backbone: bool = False
    dropout: float = 0.5
    # --- settings of Gal et al. 2017 (experiments) ---
    # Active rounds score only a seeded random subset of this many unlabeled pool samples
    # (None: the whole pool). Gal, Islam & Ghahramani 2017 score 2,000 per round.
    pool_subset: int | None = None
    # Built-in datasets: draw the initial labeled set balanced over the classes (Gal et al.: 20
    # labels, 2 per digit) instead of uniformly at random.
    initial_balanced: bool = False
    # Weight decay = this / the number of labels a round trains on (Gal et al. 2017 scale the
    # prior's weight decay with the training-set size); None: the fixed default (1e-4).
    weight_decay_scale: float | None = None
    # Train exactly ``epochs`` epochs (off: at least 200 optimizer steps, whatever the set size).
    fixed_epochs: bool = False
    # Training recipe (campaign.recipes): None, the default (Adam with weight decay on every
    # weight, batches of 32), or "gal2017", Gal et al.'s (batches of 128, Adam without decay, an
    # L2 penalty weight_decay_scale / N on the hidden dense layer only). Its defaults
    # (architecture gal_cnn, 50 fixed epochs, scale 3.5) are filled in by recipe_defaults where
    # settings are read; the stored settings show them.
    recipe: str | None = None
    # --- stopping rules (None: off) ---
    label_budget: int | None = None
    target_accuracy: float | None = None
    plateau_threshold: float | None = None
    plateau_rounds: int = 3
    # --- segmentation (task = "segmentation") ---
    # How a per-pixel map becomes an image score: mean, max, top_q (mean of the top
    # aggregation_q fraction of pixels) or class_weighted (pixels weighted by the inverse pixel
    # frequency of their predicted class in the round's labeled masks: rare classes count more).
    aggregation: str = "top_q"
    aggregation_q: float = 0.1
    # Where heatmap PNGs of the selected samples are written (None: ./activelabel-heatmaps/<name>).
    heatmap_dir: str | None = None
    # Your own folders (dataset == "files"): the masks of data_labeled's and data_test's images
    # (same relative path, suffix .png), one class index per pixel (grayscale or palette PNG) or,
    # with ``palette``, colours; ``ignore_index`` marks pixels that take no part.
    labeled_masks: str | None = None
    test_masks: str | None = None
    ignore_index: int = 255
    # Colour masks: ((r, g, b, class index), ...); None reads masks as class indices.
    palette: tuple[tuple[int, int, int, int], ...] | None = None

    def __post_init__(self) -> None:
        strategy = get_strategy(self.strategy)  # raises UnknownStrategyError
        object.__setattr__(self, "dataset", normalize_dataset_spec(self.dataset))
        object.__setattr__(self, "strategy", strategy.name)  # aliases stored canonically
        for name in ("labels", "mean", "std"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        if self.palette is not None:
            object.__setattr__(self, "palette", tuple(tuple(int(v) for v in entry) for entry in self.palette))
        check_name(self.name, "campaign")
        for name in ("rounds", "batch_size", "mc_samples", "epochs", "cpu_threads", "image_size", "plateau_rounds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        if self.initial_labeled < 0 or self.initial_labeled == 1:
            raise ConfigError(
                f"initial labeled size must be 0 (cold start through annotators) or at least 2, "
                f"got {self.initial_labeled}"
            )
        if not DEVICE_NAME.fullmatch(str(self.device)):  # checked here, before torch is loaded (trial 18 F10)
            raise ConfigError(f"device must be 'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N', "
                              f"got {self.device!r}")
        if self.uncertainty not in UNCERTAINTY_METHODS:
            raise ConfigError(
                f"unknown uncertainty method {self.uncertainty!r}; choose one of: {', '.join(UNCERTAINTY_METHODS)}"
            )
        if not 0.0 < self.ood_percentile < 100.0:
            raise ConfigError(
                f"ood_percentile must lie strictly between 0 and 100 (a percentile of the labeled set's "
                f"densities), got {self.ood_percentile}"
            )
        if self.uncertainty.startswith("ensemble") and self.ensemble_size < 2:
            raise ConfigError(f"an ensemble needs at least 2 members, got ensemble_size {self.ensemble_size}")
        if strategy.needs_samples and self.uncertainty == "deterministic":
            raise ConfigError(
                f"strategy {strategy.name!r} needs stochastic passes, but uncertainty = 'deterministic' gives one; "
                "use uncertainty = 'mc_dropout' or a strategy that works with T = 1 (entropy, margin, least_confidence)"
            )
        if strategy.needs_samples and self.mc_samples < 2:
            raise ConfigError(
                f"strategy {strategy.name!r} needs at least 2 MC samples (it is 0 for every sample "
                f"with one pass); got --mc-samples {self.mc_samples}"
            )
        self._check_refinement()
        if not 0.0 < self.test_fraction < 1.0:
            raise ConfigError(f"test fraction must be between 0 and 1, got {self.test_fraction}")
        if self.annotator not in ANNOTATORS:
            raise ConfigError(f"unknown annotator {self.annotator!r}; choose one of: {', '.join(ANNOTATORS)}")
        if self.annotations_per_task < 1:
            raise ConfigError(f"annotations per task must be at least 1, got {self.annotations_per_task}")
        if self.min_new_labels is not None and not 1 <= self.min_new_labels <= self.batch_size:
            raise ConfigError(
                f"min new labels must be between 1 and the batch size {self.batch_size}, got {self.min_new_labels}"
            )
        if not 0.0 <= self.annotator_noise < 1.0:
            raise ConfigError(f"annotator noise must be in [0, 1), got {self.annotator_noise}")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        for name in ("mean", "std"):
            value = getattr(self, name)
            if value is not None and len(value) != self.channels:
                raise ConfigError(f"{name} needs one value per channel ({self.channels}), got {list(value)}")
        if self.std is not None and any(s <= 0 for s in self.std):
            raise ConfigError(f"std values must be positive, got {list(self.std)}")
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; choose one of: {', '.join(TASKS)}")
        if self.task == "segmentation":
            self._check_segmentation()
        elif self.dataset.startswith("shapes"):
            raise ConfigError(
                f"dataset {self.dataset!r} is a segmentation dataset (masks); set task = \"segmentation\""
            )
        if self.architecture not in ARCHITECTURES and self.task == "classification":
            raise ConfigError(
                f"unknown model architecture {self.architecture!r}; choose one of: {', '.join(ARCHITECTURES)}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.evaluation_size < 0 or self.loader_workers < 0:
            raise ConfigError("evaluation size and loader workers must not be negative")
        if self.min_labels_to_train is not None and self.min_labels_to_train < 2:
            raise ConfigError(f"min labels to train must be at least 2, got {self.min_labels_to_train}")
        if self.pool_subset is not None and self.pool_subset < self.batch_size:
            raise ConfigError(
                f"pool subset must hold at least one batch ({self.batch_size}), got {self.pool_subset}"
            )
        if self.weight_decay_scale is not None and self.weight_decay_scale <= 0:
            raise ConfigError(f"weight decay scale must be positive, got {self.weight_decay_scale}")
        self._check_recipe()
        if self.initial_balanced and self.uses_own_data:
            raise ConfigError(
                "initial balanced applies to built-in datasets only; give your own seed labels "
                "in data.labeled instead"
            )
        if self.label_budget is not None and self.label_budget < 1:
            raise ConfigError(f"label budget must be at least 1, got {self.label_budget}")
        if self.target_accuracy is not None and not 0.0 < self.target_accuracy <= 1.0:
            raise ConfigError(f"target accuracy must be in (0, 1], got {self.target_accuracy}")
        if self.plateau_threshold is not None and self.plateau_threshold <= 0:
            raise ConfigError(f"plateau threshold must be positive, got {self.plateau_threshold}")
        if self.task == "classification" and (self.labeled_masks or self.test_masks or self.palette):
            raise ConfigError("segmentation.labeled_masks, test_masks and palette need task = \"segmentation\"")
        if self.uses_own_data:
            if self.data_pool is None:
                raise ConfigError("data.pool is required: a folder of images or a manifest (CSV or JSON Lines)")
            if self.data_labeled is None and not self.labels:
                raise ConfigError(
                    "data.labels is required when nothing labeled is given: list the label set, "
                    'e.g. labels = ["cat", "dog"]'
                )
            if self.annotator == "simulated" and self.truth is None and self.task == "segmentation":
                raise ConfigError(
                    "annotator.truth is required for a simulated annotator on your own images: a folder "
                    "of the pool's true masks (same relative paths as data.pool, suffix .png)"
                )
            if self.annotator == "simulated" and self.truth is None:
                raise ConfigError(
                    "annotator.truth is required for a simulated annotator on your own data: a manifest "
                    "(CSV or JSON Lines) with path and label columns that the simulation answers from"
                )
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"data.labels has duplicates: {list(self.labels)}")

    def _check_recipe(self) -> None:
        if self.recipe is None:
            return
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown training recipe {self.recipe!r}; choose one of: {', '.join(RECIPES)} (or none)")
        if self.task != "classification":
            raise ConfigError(f"recipe {self.recipe!r} trains classifiers; a {self.task} campaign has its own recipe")
        if self.architecture not in ("gal_cnn", "gal_cnn_keras", "small_cnn"):
            raise ConfigError(
                f"recipe {self.recipe!r} puts its L2 penalty on the hidden dense layer of gal_cnn, gal_cnn_keras or "
                f"small_cnn; {self.architecture} has none: use architecture gal_cnn_keras (the paper's code) or no recipe"
            )
        if self.weight_decay_scale is None:
            raise ConfigError(
                f"recipe {self.recipe!r} needs weight_decay_scale (c of the L2 penalty c / N; the paper's code: 3.5)"
            )

    def _check_refinement(self) -> None:
        """refine_passes: None (automatic), 0 (off) or at least 2; refine_candidates: None or at least one batch."""
        if self.refine_passes is None:
            pass
        elif isinstance(self.refine_passes, bool) or not isinstance(self.refine_passes, int) or (
                self.refine_passes == 1 or self.refine_passes < 0):
            raise ConfigError(
                f"refine_passes must be 0 (no refinement) or a whole number of MC passes of at least 2, "
                f"got {self.refine_passes!r}"
            )
        m = self.refine_candidates
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < self.batch_size):
            raise ConfigError(
                f"refine_candidates must hold at least one batch ({self.batch_size} = batch_size): the batch is "
                f"chosen among them; got {m!r} (leave it unset for {REFINE_MULTIPLE} x the batch size)"
            )

    @property
    def refine_count(self) -> int:
        """Candidates a round refines: ``refine_candidates``, else REFINE_MULTIPLE x the batch size."""
        return self.refine_candidates if self.refine_candidates is not None else REFINE_MULTIPLE * self.batch_size

    def _check_segmentation(self) -> None:
        """Settings a segmentation campaign can use today (the unsupported ones say so)."""
        if self.architecture == "small_cnn":  # the classification default: use the kind's default
            object.__setattr__(self, "architecture", "unet_small")
        if self.architecture not in SEGMENTATION_ARCHITECTURES:
            raise ConfigError(
                f"unknown segmentation architecture {self.architecture!r}; choose one of: "
                f"{', '.join(SEGMENTATION_ARCHITECTURES)}"
            )
        if self.strategy not in SEGMENTATION_STRATEGY_MAPS:
            raise ConfigError(
                f"strategy {self.strategy!r} has no per-pixel form; for segmentation choose one of: "
                f"{', '.join(SEGMENTATION_STRATEGY_MAPS)}"
            )
        if self.aggregation not in PIXEL_AGGREGATIONS:
            raise ConfigError(
                f"unknown aggregation {self.aggregation!r}; choose one of: {', '.join(PIXEL_AGGREGATIONS)}"
            )
        if not 0.0 < self.aggregation_q <= 1.0:
            raise ConfigError(f"aggregation_q must be in (0, 1], got {self.aggregation_q}")
        if not (self.dataset.startswith("shapes") or self.uses_own_data):
            raise ConfigError(
                f"segmentation campaigns run on the generated 'shapes' dataset or on your own folders "
                f"(dataset 'files': a campaign file's [data] section), got dataset {self.dataset!r}"
            )
        if self.uses_own_data:
            if not self.labels or len(self.labels) < 2:
                raise ConfigError(
                    "data.labels is required for segmentation: the class names in the order of the mask "
                    'values, index 0 first (e.g. labels = ["background", "road", "car"])'
                )
            if 0 <= self.ignore_index < len(self.labels) or not 0 <= self.ignore_index <= 255:
                raise ConfigError(
                    f"segmentation.ignore_index {self.ignore_index} must lie in 0..255 and not be a class "
                    f"index (0..{len(self.labels) - 1}); the usual value is 255"
                )
            for folder, masks in (("data.labeled", self.labeled_masks), ("data.test", self.test_masks)):
                given = self.data_labeled if folder == "data.labeled" else self.data_test
                if given is not None and masks is None:
                    key = "labeled_masks" if folder == "data.labeled" else "test_masks"
                    raise ConfigError(
                        f"{folder} needs its masks: set segmentation.{key} to the folder holding "
                        f"one PNG mask per image (same relative path, suffix .png)"
                    )
        unsupported = [
            (self.annotator_noise > 0, "annotator_noise"),
            (self.annotator == "simulated" and self.annotations_per_task != 1,
             "annotations_per_task > 1 with the simulated annotator"),
            (self.freeze_backbone, "freeze_backbone"),
            (self.initial_balanced, "initial_balanced"),
        ]
        named = [name for bad, name in unsupported if bad]
        if named:
            raise ConfigError(
                f"segmentation campaigns do not support {', '.join(named)} yet; leave them at their defaults"
            )

    @property
    def uses_own_data(self) -> bool:
        return self.dataset == "files"

    @property
    def cold_start_threshold(self) -> int:
        """Labels needed before a round trains a model (below: a random batch is sent)."""
        return self.min_labels_to_train or self.batch_size

    def check_pool(self, pool_size: int) -> None:
        """The pool must hold the seed set plus one batch per round."""
        if self.batch_size > pool_size - self.initial_labeled:
            raise ConfigError(
                f"batch size {self.batch_size} is larger than the unlabeled pool "
                f"({pool_size} pool samples - {self.initial_labeled} initially labeled = "
                f"{pool_size - self.initial_labeled})"
            )
        needed = self.initial_labeled + self.rounds * self.batch_size
        if needed > pool_size:
            raise ConfigError(
                f"{self.rounds} rounds of {self.batch_size} plus {self.initial_labeled} initially "
                f"labeled need {needed} pool samples, but the pool holds {pool_size}"
            )

    @property
    def labels_to_complete(self) -> int:
        return self.min_new_labels or self.batch_size

    @property
    def labelstudio_project(self) -> str:
        """The Label Studio project title (Label Studio allows at most 50 characters)."""
        title = f"activelabel {self.name}"
        return title if len(title) <= 50 else title[:50]

    def to_dict(self) -> dict:
        data = asdict(self)
        for name in ("labels", "mean", "std"):
            if data[name] is not None:
                data[name] = list(data[name])
        if data["palette"] is not None:
            data["palette"] = [list(entry) for entry in data["palette"]]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> CampaignConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def check_compatible(self, stored: CampaignConfig, *, may_change: frozenset[str] = frozenset(),
                         why: str = "") -> None:
        """Rerunning a campaign may extend its rounds, not change what its rounds meant.

        ``may_change``: further settings that may differ this time (a segmentation campaign's
        ``image_size`` before any model was trained: :mod:`activelabel.campaign.image_size_change`);
        ``why``: said in the refusal (why such a setting is fixed now)."""
        changes = [
            (f.name, getattr(stored, f.name), getattr(self, f.name))
            for f in fields(self)
            if f.name not in _MUTABLE | may_change and getattr(self, f.name) != getattr(stored, f.name)
        ]
        if changes:
            changed = [f"{name} {old!r} -> {new!r}" for name, old, new in changes]
            raise SettingsChangedError(
                f"campaign {self.name!r} already exists with other settings ({'; '.join(changed)}); "
                + (f"{why}; " if why else "") + "pick another --campaign name or a fresh --database-url",
                changes, why=why,
            )


def normalize_dataset_spec(spec: str, base: str | os.PathLike | None = None) -> str:
    """The spec with its folder resolved: ``imagefolder:data/`` and ``imagefolder:./data`` name
    the same campaign data, so a rerun spelled differently continues the same campaign. A
    relative path is relative to ``base`` (an experiment file's folder), else to the working
    folder."""
    kind, sep, rest = spec.partition(":")
    if kind not in ("imagefolder", "manifest", "mnist") or not sep or not rest:
        return spec
    path, qsep, query = rest.partition("?")
    resolved = os.path.realpath(os.path.join(base or os.getcwd(), os.path.expanduser(path)))
    return f"{kind}:{resolved}{qsep}{query}"
