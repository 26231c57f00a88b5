"""Campaigns on your own data: round kinds and stopping rules, unreadable files, file signatures.

- ``round.kind`` (evaluation | cold_start | active), ``round.stop_reason``,
  ``round.mean_pool_entropy`` (the plateau rule's input);
- ``sample.duplicate_of``: byte-identical copies point to the one sample that stands for them;
- ``sample.size_bytes`` / ``sample.mtime_ns``: a cheap check for files changed since hashing;
- ``sample_problem``: files that could not be read, with the reason (never selected);
- the ``evaluation`` split needs no DDL (splits are stored as plain strings).

Revision ID: 0003_own_data
Revises: 0002_annotation_history
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_own_data"
down_revision = "0002_annotation_history"
branch_labels = None
depends_on = None

_KIND = sa.Enum("evaluation", "cold_start", "active", name="roundkind", native_enum=False, length=32)


def upgrade() -> None:
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", _KIND, nullable=False, server_default="active"))
        batch_op.add_column(sa.Column("mean_pool_entropy", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("stop_reason", sa.Text(), nullable=True))
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.alter_column("kind", server_default=None)
    with op.batch_alter_table("sample", schema=None) as batch_op:
        batch_op.add_column(sa.Column("size_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("mtime_ns", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("duplicate_of", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_sample_duplicate_of", "sample", ["duplicate_of"], ["id"], ondelete="CASCADE"
        )
    op.create_table(
        "sample_problem",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("uri", sa.String(length=1000), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "uri", name="uq_sample_problem_campaign_uri"),
    )


def downgrade() -> None:
    op.drop_table("sample_problem")
    with op.batch_alter_table("sample", schema=None) as batch_op:
        batch_op.drop_constraint("fk_sample_duplicate_of", type_="foreignkey")
        batch_op.drop_column("duplicate_of")
        batch_op.drop_column("mtime_ns")
        batch_op.drop_column("size_bytes")
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.drop_column("stop_reason")
        batch_op.drop_column("mean_pool_entropy")
        batch_op.drop_column("kind")
