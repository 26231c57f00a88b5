"""Feature density per sample (issue 12): ``score.log_density`` (nats) and ``score.ood``.

Both nullable: random scores (evaluation and cold-start rounds) have no model, and rounds
scored before this revision have no density.

Revision ID: 0006_feature_density
Revises: 0005_uncertainty
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_feature_density"
down_revision = "0005_uncertainty"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("score", schema=None) as batch_op:
        batch_op.add_column(sa.Column("log_density", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("ood", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("score", schema=None) as batch_op:
        batch_op.drop_column("ood")
        batch_op.drop_column("log_density")
