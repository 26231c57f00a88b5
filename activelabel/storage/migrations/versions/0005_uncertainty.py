"""Uncertainty worth trusting (issue 12): the decomposition per sample, calibration per round.

- ``score.total`` / ``score.aleatoric`` / ``score.epistemic``: the sample's uncertainty split
  in nats (nullable: random scores have none);
- ``round.uncertainty``: how the pool was scored (method, T, MC mode, temperature);
- ``round.calibration``: temperature scaling fitted on a held-out validation split, with
  accuracy / NLL / Brier / ECE and reliability bins before and after;
- ``round.batch_plan``: the batch a batch-aware strategy (BatchBALD, ...) chose while scoring.

Revision ID: 0005_uncertainty
Revises: 0004_experiments
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_uncertainty"
down_revision = "0003_own_data"  # TODO(merge): "0004_experiments" once it is on main
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("score", schema=None) as batch_op:
        batch_op.add_column(sa.Column("total", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("aleatoric", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("epistemic", sa.Float(), nullable=True))
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.add_column(sa.Column("uncertainty", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("calibration", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("batch_plan", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.drop_column("batch_plan")
        batch_op.drop_column("calibration")
        batch_op.drop_column("uncertainty")
    with op.batch_alter_table("score", schema=None) as batch_op:
        batch_op.drop_column("epistemic")
        batch_op.drop_column("aleatoric")
        batch_op.drop_column("total")
