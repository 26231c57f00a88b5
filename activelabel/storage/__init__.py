"""Storage: the SQL record of every campaign, round, score, selection and annotation.

Knows nothing of torch or Prefect. SQLite by default; PostgreSQL by URL.
"""

from activelabel.storage.database import (
    DEFAULT_DATABASE_URL,
    describe_url,
    open_engine,
    session_scope,
)
from activelabel.storage.models import (
    Annotation,
    AnnotationStatus,
    Base,
    Campaign,
    CampaignLease,
    Experiment,
    Heatmap,
    ModelCheckpoint,
    Round,
    RoundKind,
    RoundStatus,
    Sample,
    SampleProblem,
    SampleSplit,
    Score,
    Selection,
)

__all__ = [
    "DEFAULT_DATABASE_URL",
    "Annotation",
    "AnnotationStatus",
    "Base",
    "Campaign",
    "CampaignLease",
    "Experiment",
    "Heatmap",
    "ModelCheckpoint",
    "Round",
    "RoundKind",
    "RoundStatus",
    "Sample",
    "SampleProblem",
    "SampleSplit",
    "Score",
    "Selection",
    "describe_url",
    "open_engine",
    "session_scope",
]
