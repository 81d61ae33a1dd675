"""products.drop_mode: first-come, queue or draw; a queue or a draw sells to signed-in shoppers only

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 16:00:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: Union[str, None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        # (the products there already go on selling as they did: first come, first served)
        batch_op.add_column(sa.Column("drop_mode", sa.String(length=16), nullable=False, server_default="first-come"))
        batch_op.create_check_constraint("drop_mode_known", "drop_mode IN ('first-come', 'queue', 'draw')")
        batch_op.create_check_constraint("drop_mode_needs_sign_in", "drop_mode = 'first-come' OR sign_in_required")


def downgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_constraint("drop_mode_needs_sign_in", type_="check")
        batch_op.drop_constraint("drop_mode_known", type_="check")
        batch_op.drop_column("drop_mode")
