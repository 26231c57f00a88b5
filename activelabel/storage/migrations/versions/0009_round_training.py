"""What a round's training actually did: ``round.training`` (JSON).

The epochs a round runs are not the campaign's ``epochs`` alone: the default recipe raises them
until at least 200 optimizer steps are taken (``pipeline.training.planned_epochs``), so a round
on 20 labels trains 200 epochs where the campaign file says 40. The row keeps what ran:
{"epochs", "requested_epochs", "steps", "batch_size", "learning_rate", "weight_decay",
"l2_penalty", "min_steps", "trained_on", "held_out", "members", "recipe"}. Nullable: rounds that train no model
(evaluation, cold start) and rounds trained before this revision have none.

Revision ID: 0009_round_training
Revises: 0008_change_old_mask
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_round_training"
down_revision = "0008_change_old_mask"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.add_column(sa.Column("training", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.drop_column("training")
