"""products.sign_in_required: a drop that only signed-in shoppers with a verified address may buy

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 09:00:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: Union[str, None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        # (the products there already go on selling as they did: to anyone)
        batch_op.add_column(sa.Column("sign_in_required", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("products", schema=None) as batch_op:
        batch_op.drop_column("sign_in_required")
