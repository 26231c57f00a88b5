"""The database schema: every campaign, sample, round, score, selection and annotation.

The database is the single source of truth. What can be derived (a sample's resolved label,
the labeled count) is derived from these rows, never kept as a second copy that can drift.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class SampleSplit(str, enum.Enum):
    """Where a sample lives. Labeled-ness is derived from annotations, not stored here."""

    pool = "pool"
    test = "test"
    # Drawn at random from the pool and labeled first by the annotators: the yardstick of a
    # campaign without a given test set. Never trained on, never selected by a strategy.
    evaluation = "evaluation"


class RoundKind(str, enum.Enum):
    """What a round is for; the round table says so."""

    # Labels the evaluation split (no model is trained).
    evaluation = "evaluation"
    # Fewer labels than min_labels_to_train: a seeded random batch, no model.
    cold_start = "cold_start"
    # Train, score the pool by uncertainty, select the most uncertain.
    active = "active"


class RoundStatus(str, enum.Enum):
    """A round's persisted state machine; each transition is committed with the step's output."""

    training = "training"
    scoring = "scoring"
    selecting = "selecting"
    pushing = "pushing"
    waiting_for_labels = "waiting_for_labels"
    complete = "complete"
    failed = "failed"


class AnnotationStatus(str, enum.Enum):
    """What one stored annotation is: a vote (``accepted``), an answer that cannot be used
    (``rejected``: a label outside the label set, a mask that does not decode), or a skip
    (``skipped``: the annotator skipped the task in Label Studio; label ""). A skip is never a
    vote; it only says who will not answer (see ``repository.set_aside_samples``).

    Stored as a plain string (no CHECK constraint: ``native_enum=False`` without
    ``create_constraint``), so a new value needs no migration."""

    accepted = "accepted"
    rejected = "rejected"
    skipped = "skipped"


def _enum(cls: type[enum.Enum]) -> Enum:
    # Store the value as a plain string (no native PG enum): portable and easy to migrate.
    return Enum(cls, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e])


class Experiment(Base):
    """A group of campaigns (strategy × seed) over the same data, compared in one report.

    ``config`` holds the settings every campaign of the experiment shares (the strategies and
    seeds included), so a rerun can continue it and a report can say how it was run.
    """

    __tablename__ = "experiment"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    config: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Campaign(Base):
    __tablename__ = "campaign"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    task_kind: Mapped[str] = mapped_column(String(32), default="classification")
    labels: Mapped[list[str]] = mapped_column(JSON)
    strategy: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(500))
    config: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The experiment this campaign is one arm of (None: a campaign of its own).
    experiment_id: Mapped[int | None] = mapped_column(
        ForeignKey("experiment.id", ondelete="SET NULL"), index=True
    )

    rounds: Mapped[list[Round]] = relationship(back_populates="campaign", order_by="Round.index")


class Sample(Base):
    __tablename__ = "sample"
    __table_args__ = (
        UniqueConstraint("campaign_id", "uri", name="uq_sample_campaign_uri"),
        Index("ix_sample_campaign_split", "campaign_id", "split"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    uri: Mapped[str] = mapped_column(String(1000))
    content_hash: Mapped[str] = mapped_column(String(64))
    split: Mapped[SampleSplit] = mapped_column(_enum(SampleSplit))
    # File size and modification time when hashed: a cheap first check for changed files.
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    # Byte-identical copies are one sample: the first copy stands for all, the others point to
    # it here. Copies are never scored, selected or trained on; they share its label.
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("sample.id", ondelete="CASCADE"))


class SampleProblem(Base):
    """A file of the campaign's data that could not be read: recorded, skipped, never selected."""

    __tablename__ = "sample_problem"
    __table_args__ = (UniqueConstraint("campaign_id", "uri", name="uq_sample_problem_campaign_uri"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    uri: Mapped[str] = mapped_column(String(1000))
    reason: Mapped[str] = mapped_column(Text)
    found_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Round(Base):
    __tablename__ = "round"
    __table_args__ = (UniqueConstraint("campaign_id", "index", name="uq_round_campaign_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    status: Mapped[RoundStatus] = mapped_column(_enum(RoundStatus), default=RoundStatus.training)
    strategy: Mapped[str] = mapped_column(String(64))
    kind: Mapped[RoundKind] = mapped_column(_enum(RoundKind), default=RoundKind.active)
    model_version: Mapped[str | None] = mapped_column(String(64))
    labeled_count: Mapped[int | None] = mapped_column(Integer)
    pool_count: Mapped[int | None] = mapped_column(Integer)
    test_accuracy: Mapped[float | None] = mapped_column(Float)
    test_nll: Mapped[float | None] = mapped_column(Float)
    test_ece: Mapped[float | None] = mapped_column(Float)
    mean_selected_score: Mapped[float | None] = mapped_column(Float)
    # Mean predictive entropy (nats) of the scored pool: the plateau stopping rule reads it.
    mean_pool_entropy: Mapped[float | None] = mapped_column(Float)
    # The stopping rule that ended the campaign after this round (None: not stopped here).
    stop_reason: Mapped[str | None] = mapped_column(Text)
    timings: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    # The step a failed round was in, so `resume` can continue exactly there.
    failed_step: Mapped[RoundStatus | None] = mapped_column(_enum(RoundStatus))
    # How the pool was scored: {"method", "samples", "mode" (naive | full_network | head_only |
    # deterministic), "temperature" (1.0: uncalibrated), "candidates" (batch-aware strategies)}.
    uncertainty: Mapped[dict | None] = mapped_column(JSON)
    # Temperature scaling fitted on the held-out validation split: {"temperature",
    # "validation_size", "before"/"after": {accuracy, nll, brier, ece, reliability}} on the
    # test/evaluation yardstick (see campaign.calibrate). None: not enough labels to hold out.
    calibration: Mapped[dict | None] = mapped_column(JSON)
    # Batch-aware strategies choose the batch while scoring (they need the [S, N, C]
    # probabilities): {"sample_ids": [...] in rank order, "scores": [...]}; select_step takes it.
    batch_plan: Mapped[dict | None] = mapped_column(JSON)
    # Segmentation rounds: {"miou", "per_class_iou": {label: IoU or None}, "pixel_accuracy",
    # "pixel_ece", "pixels"} on the test/evaluation yardstick (test_accuracy and test_ece hold
    # the pixel accuracy and pixel ECE as well). None for classification rounds.
    segmentation_metrics: Mapped[dict | None] = mapped_column(JSON)
    # What the round's training ran (campaign.model_settings.training_record): {"epochs",
    # "requested_epochs", "steps" (optimizer steps per model), "batch_size", "learning_rate",
    # "weight_decay", "l2_penalty", "min_steps", "trained_on" (labels the models learned from),
    # "held_out" (labels kept for calibration), "members" (models trained), "recipe"}. None: no
    # model trained (evaluation, cold start) or a round trained before this column.
    training: Mapped[dict | None] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    campaign: Mapped[Campaign] = relationship(back_populates="rounds")

    @property
    def resume_step(self) -> RoundStatus:
        """The step a run continues this round at: a failed round's failed step (``training``
        for one failed before the step was stored), else the step it stands in."""
        if self.status == RoundStatus.failed:
            return self.failed_step or RoundStatus.training
        return self.status


class ModelCheckpoint(Base):
    """The weights a round trained, so its metrics and scores can be recomputed and audited."""

    __tablename__ = "model_checkpoint"
    __table_args__ = (UniqueConstraint("round_id", "member", name="uq_model_checkpoint_round_member"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"))
    # Deep ensembles store one checkpoint per member (0..M-1); a single model is member 0.
    member: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    version: Mapped[str] = mapped_column(String(64))
    architecture: Mapped[dict] = mapped_column(JSON)
    state: Mapped[bytes] = mapped_column(LargeBinary)


class Score(Base):
    """One acquisition score per (round, pool sample, strategy): the bulkiest table by far.

    ``sample_id`` has no foreign key on purpose: PostgreSQL checks a foreign key row by row,
    which doubled the time of a million-row COPY (see BENCHMARKS.md). Scores are only written
    for sample ids read in the same transaction, and samples are only deleted with their
    campaign, whose rounds (and so scores) cascade away with it.
    """

    __tablename__ = "score"

    round_id: Mapped[int] = mapped_column(
        ForeignKey("round.id", ondelete="CASCADE"), primary_key=True
    )
    sample_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    strategy: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    # The model's mean prediction behind the score: what annotators see as a pre-annotation.
    predicted_class: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)
    # The sample's uncertainty split in nats (acquisition.uncertainty_decomposition); None for
    # random scores (no model). total = aleatoric + epistemic; epistemic is BALD.
    total: Mapped[float | None] = mapped_column(Float)
    aleatoric: Mapped[float | None] = mapped_column(Float)
    epistemic: Mapped[float | None] = mapped_column(Float)
    # Feature density (DDU): log q(z) of the sample's penultimate features under the class-
    # conditional Gaussians fitted on the round's labeled set, in nats, and whether it falls
    # below the round's OOD threshold (round.uncertainty["density"]). None without a model.
    log_density: Mapped[float | None] = mapped_column(Float)
    ood: Mapped[bool | None] = mapped_column(Boolean)


class Selection(Base):
    __tablename__ = "selection"
    __table_args__ = (
        # A sample is selected at most once in a campaign, whatever crashes in between.
        UniqueConstraint("campaign_id", "sample_id", name="uq_selection_campaign_sample"),
        UniqueConstraint("round_id", "rank", name="uq_selection_round_rank"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    round_id: Mapped[int] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("sample.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    predicted_label: Mapped[str] = mapped_column(String(200))
    confidence: Mapped[float] = mapped_column(Float)
    external_task_id: Mapped[str | None] = mapped_column(String(100))


class Annotation(Base):
    __tablename__ = "annotation"
    __table_args__ = (
        # Keyed by the backend's own id, so a second sync is a no-op.
        UniqueConstraint("campaign_id", "source", "external_id", name="uq_annotation_external"),
        Index("ix_annotation_sample", "sample_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("sample.id", ondelete="CASCADE"))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("round.id", ondelete="SET NULL"))
    annotator: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[AnnotationStatus] = mapped_column(
        _enum(AnnotationStatus), default=AnnotationStatus.accepted
    )
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # When the backend last changed this annotation (Label Studio's ``updated_at``); None for
    # seed labels and backends that do not say. A later edit there replaces label and time here.
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Segmentation: the annotator's mask as an 8-bit grayscale PNG (one class index per pixel,
    # 255 = ignore). In the row, not in a file beside the database: it commits (or not) with the
    # answer, moves with the database, and a 64x64 mask compresses to a few hundred bytes.
    # None for classification labels.
    mask: Mapped[bytes | None] = mapped_column(LargeBinary)


class Heatmap(Base):
    """A heatmap PNG written for a selected sample of a segmentation round, and its map's summary.

    The file (image | predicted mask | uncertainty map | max-softmax map) is for people and for
    Label Studio, so it lives on disk; its path and the statistics live here.
    """

    __tablename__ = "heatmap"
    __table_args__ = (UniqueConstraint("round_id", "sample_id", name="uq_heatmap_round_sample"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("round.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("sample.id", ondelete="CASCADE"))
    # The per-pixel map drawn: entropy, bald or variance (nats, nats, probability²).
    map_name: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(String(1000))
    mean: Mapped[float] = mapped_column(Float)
    max: Mapped[float] = mapped_column(Float)
    top_q_mean: Mapped[float] = mapped_column(Float)
    q: Mapped[float] = mapped_column(Float)


class AnnotationChangeKind(str, enum.Enum):
    edited = "edited"
    deleted = "deleted"


class AnnotationChange(Base):
    """History: one row per annotation edited or deleted in the backend after it was stored.

    The ``annotation`` table holds only what the backend holds now (resolved labels are derived
    from it); what was replaced, by what and when is kept here and never changed.
    """

    __tablename__ = "annotation_change"
    __table_args__ = (Index("ix_annotation_change_campaign_sample", "campaign_id", "sample_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaign.id", ondelete="CASCADE"))
    sample_id: Mapped[int] = mapped_column(ForeignKey("sample.id", ondelete="CASCADE"))
    round_id: Mapped[int | None] = mapped_column(ForeignKey("round.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(100))
    annotator: Mapped[str] = mapped_column(String(200))
    kind: Mapped[AnnotationChangeKind] = mapped_column(_enum(AnnotationChangeKind))
    old_label: Mapped[str] = mapped_column(String(200))
    old_status: Mapped[AnnotationStatus] = mapped_column(_enum(AnnotationStatus))
    old_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # None when the annotation was deleted.
    new_label: Mapped[str | None] = mapped_column(String(200))
    new_status: Mapped[AnnotationStatus | None] = mapped_column(_enum(AnnotationStatus))
    new_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # When the sync saw the change (this machine's clock).
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Segmentation: the replaced (or deleted) annotation's mask, the PNG bytes ``annotation.mask``
    # held before the change. None for a classification answer, an answer that had no mask (a
    # rejected one) and changes recorded before migration 0008.
    old_mask: Mapped[bytes | None] = mapped_column(LargeBinary)


class SyncCursor(Base):
    """How far a campaign's sync has read a backend: its high-water mark of task changes.

    For Label Studio: the newest task ``updated_at`` seen (Label Studio's own clock, as text);
    the next sync reads only tasks changed since then (minus a small overlap).
    """

    __tablename__ = "sync_cursor"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(64))
    synced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class CampaignLease(Base):
    """Which process is running a round of the campaign now: at most one row per campaign.

    A lease is taken before a round starts and dropped when it ends; a lease whose process is
    gone (same host, dead pid) or whose heartbeat is stale can be taken over, so a crash never
    blocks the campaign for good.
    """

    __tablename__ = "campaign_lease"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaign.id", ondelete="CASCADE"), primary_key=True
    )
    owner: Mapped[str] = mapped_column(String(64))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    round_index: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
