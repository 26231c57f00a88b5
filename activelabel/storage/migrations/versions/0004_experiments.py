"""Experiments: campaigns (strategy × seed) grouped to be compared in one report.

- ``experiment`` (id, name unique, config JSON, created_at);
- ``campaign.experiment_id``: nullable, indexed; deleting an experiment keeps its campaigns.

Revision ID: 0004_experiments
Revises: 0003_own_data
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_experiments"
down_revision = "0003_own_data"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(sa.Column("experiment_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_campaign_experiment_id", "experiment", ["experiment_id"], ["id"], ondelete="SET NULL"
        )
        batch_op.create_index("ix_campaign_experiment_id", ["experiment_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_index("ix_campaign_experiment_id")
        batch_op.drop_constraint("fk_campaign_experiment_id", type_="foreignkey")
        batch_op.drop_column("experiment_id")
    op.drop_table("experiment")
