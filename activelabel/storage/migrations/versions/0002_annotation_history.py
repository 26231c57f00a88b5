"""Annotation history: the backend's updated_at, edits and deletions kept, a sync cursor.

Revision ID: 0002_annotation_history
Revises: 0001
Create Date: 2026-11-29 11:55:00

- ``annotation.updated_at``: when the backend last changed the annotation.
- ``annotation_change``: one row per edit or deletion seen by a sync (old and new label).
- ``sync_cursor``: per campaign and source, the newest backend change time read so far.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_annotation_history"
down_revision = "0001"
branch_labels = None
depends_on = None


def _status(name: str) -> sa.Enum:
    return sa.Enum("accepted", "rejected", name=name, native_enum=False, length=32)


def upgrade() -> None:
    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "annotation_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("sample_id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=100), nullable=False),
        sa.Column("annotator", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.Enum("edited", "deleted", name="annotationchangekind", native_enum=False,
                                  length=32), nullable=False),
        sa.Column("old_label", sa.String(length=200), nullable=False),
        sa.Column("old_status", _status("annotationstatus"), nullable=False),
        sa.Column("old_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("new_label", sa.String(length=200), nullable=True),
        sa.Column("new_status", _status("annotationstatus"), nullable=True),
        sa.Column("new_updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["round_id"], ["round.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["sample_id"], ["sample.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("annotation_change", schema=None) as batch_op:
        batch_op.create_index("ix_annotation_change_campaign_sample", ["campaign_id", "sample_id"],
                              unique=False)

    op.create_table(
        "sync_cursor",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=64), nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("campaign_id", "source"),
    )


def downgrade() -> None:
    op.drop_table("sync_cursor")
    with op.batch_alter_table("annotation_change", schema=None) as batch_op:
        batch_op.drop_index("ix_annotation_change_campaign_sample")
    op.drop_table("annotation_change")
    with op.batch_alter_table("annotation", schema=None) as batch_op:
        batch_op.drop_column("updated_at")
