"""Segmentation in the round (issue 10): masks as labels, per-round segmentation metrics, heatmaps.

- ``annotation.mask``: the annotator's mask as PNG bytes (8-bit grayscale, one class index per
  pixel, 255 = ignore). Stored in the row rather than as a file whose path the row names: the
  mask then commits in the same transaction as the answer (a crash never leaves a row without
  its file, or a file without its row), moves and is backed up with the database, and works
  the same on SQLite and PostgreSQL. PNG keeps a 64x64 mask at a few hundred bytes.
- ``round.segmentation_metrics``: mIoU, per-class IoU, pixel accuracy and pixel ECE.
- ``heatmap``: the heatmap PNG written for each selected sample (path on disk: the file is for
  people and for Label Studio) and its map's mean, max and top-q mean.

Revision ID: 0007_segmentation
Revises: 0006_feature_density
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_segmentation"
down_revision = "0006_feature_density"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mask", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.add_column(sa.Column("segmentation_metrics", sa.JSON(), nullable=True))
    op.create_table(
        "heatmap",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("map_name", sa.String(length=32), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("mean", sa.Float(), nullable=False),
        sa.Column("max", sa.Float(), nullable=False),
        sa.Column("top_q_mean", sa.Float(), nullable=False),
        sa.Column("q", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["round_id"], ["round.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["sample_id"], ["sample.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("round_id", "sample_id", name="uq_heatmap_round_sample"),
    )


def downgrade() -> None:
    op.drop_table("heatmap")
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.drop_column("segmentation_metrics")
    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.drop_column("mask")
