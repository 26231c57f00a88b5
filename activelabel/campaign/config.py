"""A campaign's settings, checked before anything is written."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from activelabel.acquisition import get_strategy
from activelabel.errors import CampaignStateError, ConfigError

# Settings that may change between runs of the same campaign without changing its meaning.
_MUTABLE = {"rounds", "device", "cpu_threads", "min_new_labels", "image_url_prefix", "document_root"}
ANNOTATORS = ("simulated", "labelstudio")


@dataclass(frozen=True)
class CampaignConfig:
    name: str
    dataset: str = "digits"
    strategy: str = "bald"
    rounds: int = 10
    batch_size: int = 20
    initial_labeled: int = 20
    mc_samples: int = 20
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

    def __post_init__(self) -> None:
        strategy = get_strategy(self.strategy)  # raises UnknownStrategyError
        object.__setattr__(self, "strategy", strategy.name)  # aliases stored canonically
        if not self.name.strip():
            raise ConfigError("campaign name must not be empty")
        for name in ("rounds", "batch_size", "mc_samples", "epochs", "cpu_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        if self.initial_labeled < 2:
            raise ConfigError(
                f"initial labeled size must be at least 2 to train a first model, got {self.initial_labeled}"
            )
        if strategy.needs_samples and self.mc_samples < 2:
            raise ConfigError(
                f"strategy {strategy.name!r} needs at least 2 MC samples (it is 0 for every sample "
                f"with one pass); got --mc-samples {self.mc_samples}"
            )
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
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CampaignConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def check_compatible(self, stored: CampaignConfig) -> None:
        """Rerunning a campaign may extend its rounds, not change what its rounds meant."""
        changed = [
            f"{f.name} {getattr(stored, f.name)!r} -> {getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name not in _MUTABLE and getattr(self, f.name) != getattr(stored, f.name)
        ]
        if changed:
            raise CampaignStateError(
                f"campaign {self.name!r} already exists with other settings ({'; '.join(changed)}); "
                "pick another --campaign name or a fresh --database-url"
            )
