"""Initial schema: campaigns, samples, rounds, checkpoints, scores, selections, annotations, leases.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-25 07:14:10.425669
"""

from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('campaign',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('task_kind', sa.String(length=32), nullable=False),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('strategy', sa.String(length=64), nullable=False),
    sa.Column('dataset', sa.String(length=500), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name')
    )
    op.create_table('campaign_lease',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('round_index', sa.Integer(), nullable=False),
    sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaign.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id')
    )
    op.create_table('round',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('index', sa.Integer(), nullable=False),
    sa.Column('status', sa.Enum('training', 'scoring', 'selecting', 'pushing', 'waiting_for_labels', 'complete', 'failed', name='roundstatus', native_enum=False, length=32), nullable=False),
    sa.Column('strategy', sa.String(length=64), nullable=False),
    sa.Column('model_version', sa.String(length=64), nullable=True),
    sa.Column('labeled_count', sa.Integer(), nullable=True),
    sa.Column('pool_count', sa.Integer(), nullable=True),
    sa.Column('test_accuracy', sa.Float(), nullable=True),
    sa.Column('test_nll', sa.Float(), nullable=True),
    sa.Column('test_ece', sa.Float(), nullable=True),
    sa.Column('mean_selected_score', sa.Float(), nullable=True),
    sa.Column('timings', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('failed_step', sa.Enum('training', 'scoring', 'selecting', 'pushing', 'waiting_for_labels', 'complete', 'failed', name='roundstatus', native_enum=False, length=32), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaign.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'index', name='uq_round_campaign_index')
    )
    op.create_table('sample',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('uri', sa.String(length=1000), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('split', sa.Enum('pool', 'test', name='samplesplit', native_enum=False, length=32), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaign.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'uri', name='uq_sample_campaign_uri')
    )
    with op.batch_alter_table('sample', schema=None) as batch_op:
        batch_op.create_index('ix_sample_campaign_split', ['campaign_id', 'split'], unique=False)

    op.create_table('annotation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('sample_id', sa.Integer(), nullable=False),
    sa.Column('round_id', sa.Integer(), nullable=True),
    sa.Column('annotator', sa.String(length=200), nullable=False),
    sa.Column('label', sa.String(length=200), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('external_id', sa.String(length=100), nullable=False),
    sa.Column('status', sa.Enum('accepted', 'rejected', name='annotationstatus', native_enum=False, length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaign.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['sample_id'], ['sample.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'source', 'external_id', name='uq_annotation_external')
    )
    with op.batch_alter_table('annotation', schema=None) as batch_op:
        batch_op.create_index('ix_annotation_sample', ['sample_id'], unique=False)

    op.create_table('model_checkpoint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('architecture', sa.JSON(), nullable=False),
    sa.Column('state', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('round_id')
    )
    op.create_table('score',
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('sample_id', sa.Integer(), nullable=False),
    sa.Column('strategy', sa.String(length=64), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.Column('predicted_class', sa.Integer(), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('round_id', 'sample_id', 'strategy')
    )
    op.create_table('selection',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('round_id', sa.Integer(), nullable=False),
    sa.Column('sample_id', sa.Integer(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('predicted_label', sa.String(length=200), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('external_task_id', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaign.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['round_id'], ['round.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['sample_id'], ['sample.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'sample_id', name='uq_selection_campaign_sample'),
    sa.UniqueConstraint('round_id', 'rank', name='uq_selection_round_rank')
    )


def downgrade() -> None:
    op.drop_table('selection')
    op.drop_table('score')
    op.drop_table('model_checkpoint')
    with op.batch_alter_table('annotation', schema=None) as batch_op:
        batch_op.drop_index('ix_annotation_sample')

    op.drop_table('annotation')
    with op.batch_alter_table('sample', schema=None) as batch_op:
        batch_op.drop_index('ix_sample_campaign_split')

    op.drop_table('sample')
    op.drop_table('round')
    op.drop_table('campaign_lease')
    op.drop_table('campaign')
