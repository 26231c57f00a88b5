"""Uncertainty worth trusting (issue 12): the decomposition per sample, calibration per round.

- ``score.total`` / ``score.aleatoric`` / ``score.epistemic``: the sample's uncertainty split
  in nats (nullable: random scores have none);
- ``round.uncertainty``: how the pool was scored (method, T, MC mode, temperature);
- ``round.calibration``: temperature scaling fitted on a held-out validation split, with
  accuracy / NLL / Brier / ECE and reliability bins before and after;
- ``round.batch_plan``: the batch a batch-aware strategy (BatchBALD, ...) chose while scoring;
- ``model_checkpoint.member``: deep ensembles store M checkpoints per round, so the unique key
  moves from ``round_id`` to ``(round_id, member)``.

Revision ID: 0005_uncertainty
Revises: 0004_experiments
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_uncertainty"
down_revision = "0004_experiments"
branch_labels = None
depends_on = None


# SQLite reflects 0001's unnamed UNIQUE (round_id) without a name: batch mode names it by this
# convention so it can be dropped. PostgreSQL named it itself.
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _round_unique_name() -> str:
    if op.get_bind().dialect.name == "postgresql":
        return "model_checkpoint_round_id_key"
    return "uq_model_checkpoint_round_id"


def upgrade() -> None:
    with op.batch_alter_table("score", schema=None) as batch_op:
        batch_op.add_column(sa.Column("total", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("aleatoric", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("epistemic", sa.Float(), nullable=True))
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.add_column(sa.Column("uncertainty", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("calibration", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("batch_plan", sa.JSON(), nullable=True))
    old_unique = _round_unique_name()
    with op.batch_alter_table("model_checkpoint", schema=None, naming_convention=_NAMING) as batch_op:
        batch_op.add_column(sa.Column("member", sa.Integer(), nullable=False, server_default="0"))
        batch_op.drop_constraint(old_unique, type_="unique")
        batch_op.create_unique_constraint("uq_model_checkpoint_round_member", ["round_id", "member"])


def downgrade() -> None:
    with op.batch_alter_table("model_checkpoint", schema=None) as batch_op:
        batch_op.drop_constraint("uq_model_checkpoint_round_member", type_="unique")
        batch_op.drop_column("member")
        batch_op.create_unique_constraint(_round_unique_name(), ["round_id"])
    with op.batch_alter_table("round", schema=None) as batch_op:
        batch_op.drop_column("batch_plan")
        batch_op.drop_column("calibration")
        batch_op.drop_column("uncertainty")
    with op.batch_alter_table("score", schema=None) as batch_op:
        batch_op.drop_column("epistemic")
        batch_op.drop_column("aleatoric")
        batch_op.drop_column("total")
