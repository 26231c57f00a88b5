"""Placeholder: replaced by the annotation-history migration when it lands.

Revision ID: 0002_annotation_history
Revises: 0001
"""

revision = "0002_annotation_history"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
