"""draw_entries.told_at: when each entrant's letter was sent (marked on the postbox's receipt), or
given up on, or found to have no account; a letter lost with the process, or whose mail server was
away, is posted again by a later round

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 23:10:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: Union[str, None] = "0009"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("draw_entries") as table:
        table.add_column(sa.Column("told_at", sa.DateTime(timezone=True), nullable=True))
    # The entrants of a draw told before this revision were told as a whole: not again.
    op.execute("UPDATE draw_entries SET told_at = (SELECT told_at FROM draws WHERE draws.product_id = "
               "draw_entries.product_id) WHERE product_id IN (SELECT product_id FROM draws WHERE told_at IS NOT NULL)")


def downgrade() -> None:
    with op.batch_alter_table("draw_entries") as table:
        table.drop_column("told_at")
