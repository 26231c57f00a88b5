"""Keep the old mask of an edited or deleted segmentation annotation.

- ``annotation_change.old_mask``: the PNG bytes ``annotation.mask`` held before a sync saw the
  annotation edited (repainted) or deleted in the backend, in the same format (8-bit grayscale,
  one class index per pixel, 255 = ignore). Until now the history recorded that a mask changed
  (label ``<mask>``) but not what it was. Nullable: classification answers, answers that had no
  mask (rejected ones) and changes recorded before this migration have none.

The downgrade drops the column (and with it the kept masks); every history row stays.

Revision ID: 0008_change_old_mask
Revises: 0007_segmentation
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_change_old_mask"
down_revision = "0007_segmentation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("annotation_change", schema=None) as batch_op:
        batch_op.add_column(sa.Column("old_mask", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("annotation_change", schema=None) as batch_op:
        batch_op.drop_column("old_mask")
